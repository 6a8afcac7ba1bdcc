"""Log lines cannot be forged or hidden by what clients send (issue 12 item 10)."""

from __future__ import annotations

import logging
import sys

from hypothesis import example, given
from hypothesis import strategies as st

from streamd.logs import OneLineFormatter, printable


@given(st.text())
@example("rtsp://h/a\u2028b\u0085c\r\nFAKE 200\x00")
def test_printable_is_one_printable_line(text: str) -> None:
    shown = printable(text)
    assert shown.isprintable() and (shown == text) == text.isprintable()


def test_the_formatter_escapes_the_message_but_not_the_traceback() -> None:
    formatter = OneLineFormatter("%(message)s")
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.LogRecord(
            "x", logging.WARNING, __file__, 1, "%s: uri %s", ("c", "/a\u2028b\nc"), None
        )
        record.exc_info = sys.exc_info()
    lines = formatter.format(record).split("\n")
    assert lines[0] == "c: uri /a\\u2028b\\nc" and lines[1].startswith("Traceback")
