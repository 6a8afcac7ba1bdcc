"""Log set-up: one readable line per event, with time, level and the words that matter.

One line per event also against clients: URIs, paths and headers they send end up in messages,
and a newline, NUL, U+0085 or U+2028 in them would forge or hide lines. The formatter escapes
every character that is not printable in the message (tracebacks, added after it, keep theirs).
"""

from __future__ import annotations

import logging
import sys


def printable(text: str) -> str:
    """``text`` with every non-printable character (controls, line and paragraph separators)
    written as its Python escape, so it stays on one line and shows what was sent."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


class OneLineFormatter(logging.Formatter):
    """Escapes what the message carries; the exception text that follows keeps its lines."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = printable(record.message)
        return super().formatMessage(record)


class MalformedHttpFilter(logging.Filter):
    """aiohttp logs a malformed request after the first on a connection (a bad method, a broken
    header) at ERROR with a traceback: any client could fill the log with them. Such a record
    becomes one WARNING line with the reason, like the RTSP side's malformed requests."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if exc is not None and type(exc).__module__ == "aiohttp.http_exceptions":
            record.msg, record.args = "%s: %s", (record.getMessage(), " ".join(str(exc).split()))
            record.exc_info, record.exc_text = None, None
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


def configure_logging(level: str = "info") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(OneLineFormatter("%(asctime)s %(levelname)-7s %(message)s", "%Y-%m-%d %H:%M:%S"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("asyncio").setLevel(logging.WARNING)
    logging.getLogger("libav").setLevel(logging.ERROR)
    logging.getLogger("aiohttp.server").addFilter(MalformedHttpFilter())
