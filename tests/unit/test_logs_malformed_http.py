"""aiohttp's bad-request records as one warning line (found by tests/integration/test_fuzz_server.py)."""

from __future__ import annotations

import logging
import sys

from aiohttp.http_exceptions import BadHttpMethod

from streamd.logs import MalformedHttpFilter


def test_malformed_http_requests_are_one_warning_line_not_a_traceback() -> None:
    """aiohttp logs a bad pipelined request at ERROR with a traceback; it becomes a WARNING line."""
    try:
        raise BadHttpMethod("T")
    except BadHttpMethod:
        exc_info = sys.exc_info()
    record = logging.LogRecord(
        "aiohttp.server", logging.ERROR, "x", 1, "Error handling request from %s", ("1.2.3.4",), exc_info
    )
    assert MalformedHttpFilter().filter(record)
    assert record.levelno == logging.WARNING and record.exc_info is None
    assert record.getMessage().startswith("Error handling request from 1.2.3.4: 400")


def test_other_records_pass_unchanged() -> None:
    record = logging.LogRecord("aiohttp.server", logging.ERROR, "x", 1, "boom", (), None)
    assert MalformedHttpFilter().filter(record) and record.levelno == logging.ERROR
