"""Incremental, sans-I/O parser for one RTSP connection's byte stream.

Bytes go in through :meth:`MessageParser.feed`, events come out: requests, responses, interleaved
``$`` frames (RTP/RTCP over the RTSP connection, RFC 2326 section 10.12) and parse errors. The
parser never raises and never holds more than ``max_header_bytes + max_body_bytes`` plus one
internal chunk, so a hostile peer can cost us a bounded amount of memory and nothing else.

Every decision depends only on the bytes seen, never on how they were split into ``feed`` calls,
so any split of a stream yields the same events (the property tests check exactly this).

Errors that leave the framing intact (a garbled request line or header) are reported as
non-fatal: the parser skips that header block and its declared body and carries on, so the
server can answer 400 and keep the connection. Errors that lose the framing (a header block
too large, an unusable or oversized ``Content-Length``) are fatal: the parser goes quiet and
the server should answer and close.

RTSP-over-HTTP tunnelling: after a request whose version is ``HTTP/x.y`` the parser stops (the
``POST`` half of a tunnel carries base64 after the headers, not a body of ``Content-Length``
bytes). The shell checks :attr:`MessageParser.detached` and takes the rest with
:meth:`MessageParser.detach`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from multidict import CIMultiDict

from streamd.rtsp.message import TOKEN_RE, InterleavedFrame, Request, Response, parse_cseq

__all__ = ["Event", "MessageParser", "ParseError"]


@dataclass(frozen=True)
class ParseError:
    """Bytes that are not a valid message: ``status``/``reason`` for the reply, ``cseq`` to echo."""

    status: int
    reason: str
    fatal: bool
    cseq: int | None = None


Event = Request | Response | InterleavedFrame | ParseError

SUPPORTED_VERSIONS = frozenset({"RTSP/1.0", "RTSP/2.0", "HTTP/1.0", "HTTP/1.1"})

# Bytes appended to the buffer per processing step: the "small constant" of the memory bound.
_CHUNK = 8192
_HEAD_END = re.compile(rb"\n\r?\n")
_VERSION_RE = re.compile(r"(?:RTSP|HTTP)/[0-9]+\.[0-9]+")
# Fields are separated by SP/HT only (not by other Unicode whitespace, which str.split would use).
_FIRST_FIELD = re.compile(r"[^ \t]*")
_REQUEST_LINE = re.compile(r"([^ \t]+)[ \t]+([^ \t]+)[ \t]+([^ \t]+)[ \t]*")
_STATUS_LINE = re.compile(r"([^ \t]+)[ \t]+([0-9]{3})(?:[ \t]+(.*?))?[ \t]*")
_URI_RE = re.compile(r"[^\x00-\x20\x7f]+")
_BAD_CHARS = re.compile(r"[\x00\r]")
_LWS = " \t"


class _Fatal(Exception):
    """Internal: the stream cannot be framed any further."""

    def __init__(self, status: int, reason: str, cseq: int | None) -> None:
        super().__init__(reason)
        self.error = ParseError(status, reason, True, cseq)


def _decode(data: bytes) -> str:
    """RTSP text is UTF-8; fall back to Latin-1 (never fails) for old clients' stray bytes."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def _split_lines(text: str) -> list[str]:
    return [line.rstrip("\r") for line in text.split("\n")]


def _parse_fields(lines: list[str]) -> tuple[list[tuple[str, str]], str | None]:
    """Header fields with folded lines joined, plus the first problem seen (None if none).

    Keeps collecting after a problem so CSeq and Content-Length are still found.
    """
    fields: list[tuple[str, str]] = []
    problem: str | None = None
    for line in lines:
        if line[:1] in (" ", "\t"):
            if not fields:
                problem = problem or "continuation line before the first header"
                continue
            name, value = fields[-1]
            if _BAD_CHARS.search(line):
                problem = problem or f"control character in header {name}"
                continue
            fields[-1] = (name, f"{value} {line.strip(_LWS)}".strip(_LWS))
            continue
        name, sep, value = line.partition(":")
        name = name.rstrip(_LWS)
        if not sep or not TOKEN_RE.fullmatch(name):
            problem = problem or f"malformed header line {line[:60]!r}"
            continue
        value = value.strip(_LWS)
        if _BAD_CHARS.search(value):
            problem = problem or f"control character in header {name}"
            continue
        fields.append((name, value))
    return fields, problem


def _content_length(fields: list[tuple[str, str]], max_body: int, cseq: int | None) -> int:
    length: int | None = None
    for name, value in fields:
        if name.lower() != "content-length":
            continue
        if not (value.isascii() and value.isdigit()):
            raise _Fatal(400, f"invalid Content-Length {value[:30]!r}", cseq)
        digits = value.lstrip("0") or "0"
        this = max_body + 1 if len(digits) > 18 else int(digits)
        if length is not None and this != length:
            raise _Fatal(400, "conflicting Content-Length headers", cseq)
        length = this
    if length is not None and length > max_body:
        raise _Fatal(413, f"body of {length} bytes exceeds the {max_body} byte limit", cseq)
    return length or 0


def _parse_start_line(line: str) -> Request | Response | ParseError:
    """A message without headers or body, or the (non-fatal) reason the start line is unusable."""
    first = _FIRST_FIELD.match(line)
    if first is not None and _VERSION_RE.fullmatch(first.group()):
        m = _STATUS_LINE.fullmatch(line)
        if m is None:
            return ParseError(400, f"malformed status line {line[:80]!r}", False)
        version, status, reason = m.group(1), int(m.group(2)), m.group(3) or ""
        if _BAD_CHARS.search(reason) or status < 100:
            return ParseError(400, f"malformed status line {line[:80]!r}", False)
        if version not in SUPPORTED_VERSIONS:
            return ParseError(505, f"unsupported version {version}", False)
        return Response(status, reason, version)
    m = _REQUEST_LINE.fullmatch(line)
    if m is None:
        return ParseError(400, f"malformed request line {line[:80]!r}", False)
    method, uri, version = m.groups()
    if not TOKEN_RE.fullmatch(method) or not _URI_RE.fullmatch(uri):
        return ParseError(400, f"malformed request line {line[:80]!r}", False)
    if not _VERSION_RE.fullmatch(version):
        return ParseError(400, f"malformed version {version[:20]!r}", False)
    if version not in SUPPORTED_VERSIONS:
        return ParseError(505, f"unsupported version {version}", False)
    return Request(method, uri, version)


class MessageParser:
    """Turns one connection's bytes into :data:`Event` values; see the module docstring."""

    def __init__(
        self, *, max_header_bytes: int = 16384, max_body_bytes: int = 1_048_576, max_headers: int = 100
    ) -> None:
        self.max_header_bytes = max_header_bytes
        self.max_body_bytes = max_body_bytes
        self.max_headers = max_headers
        self._buf = bytearray()
        self._scan = 0  # where the next search for the end of the header block starts
        self._pending: Request | Response | None = None  # waiting for its body
        self._body_len = 0
        self._skip = 0  # body bytes of a rejected message still to discard
        self._dead = False
        self._detached = False

    @property
    def failed(self) -> bool:
        """True after a fatal error: the connection should be answered and closed."""
        return self._dead

    @property
    def buffered(self) -> int:
        """Bytes currently held (bounded by the limits; exposed for tests and metrics)."""
        return len(self._buf)

    @property
    def detached(self) -> bool:
        """True after an HTTP request: the rest of the stream is not RTSP (see :meth:`detach`)."""
        return self._detached

    def detach(self) -> bytes:
        """The unparsed bytes after an HTTP request's header block; the parser keeps nothing."""
        rest = bytes(self._buf)
        self._buf.clear()
        return rest

    def feed(self, data: bytes) -> list[Event]:
        """Consume ``data`` and return every event it completes. Never raises.

        After a fatal error or an HTTP request, returns ``[]`` and ignores ``data``.
        """
        events: list[Event] = []
        if self._dead or self._detached:
            return events
        try:
            view = memoryview(data).cast("B")
            for offset in range(0, len(view), _CHUNK):
                self._buf += view[offset : offset + _CHUNK]
                self._process(events)
                if self._detached:
                    self._buf += view[offset + _CHUNK :]
                    break
        except _Fatal as exc:
            events.append(exc.error)
            self._die()
        except Exception as exc:  # a bug must cost one connection, not the server
            events.append(ParseError(400, f"internal parser error: {exc!r}", True, None))
            self._die()
        return events

    def _die(self) -> None:
        self._dead = True
        self._buf = bytearray()
        self._pending = None

    def _process(self, events: list[Event]) -> None:
        buf = self._buf
        while True:
            if self._skip:
                n = min(self._skip, len(buf))
                del buf[:n]
                self._skip -= n
                if self._skip:
                    return
            if self._pending is not None:
                if len(buf) < self._body_len:
                    return
                message, self._pending = self._pending, None
                message.body = bytes(buf[: self._body_len])
                del buf[: self._body_len]
                events.append(message)
                continue
            # Between messages: blank lines are allowed (RFC 2326 keep-alives send bare CRLF).
            blank = 0
            while blank < len(buf) and buf[blank] in b"\r\n":
                blank += 1
            if blank:
                del buf[:blank]
            if not buf:
                return
            if buf[0] == 0x24:  # '$'
                if len(buf) < 4:
                    return
                size = int.from_bytes(buf[2:4], "big")
                if len(buf) < 4 + size:
                    return
                events.append(InterleavedFrame(buf[1], bytes(buf[4 : 4 + size])))
                del buf[: 4 + size]
                continue
            end = self._find_head_end()
            if end is None:
                if len(buf) >= self.max_header_bytes:
                    raise _Fatal(400, "header block too large", self._partial_cseq())
                return
            head = bytes(buf[:end])
            del buf[:end]
            self._scan = 0
            self._handle_head(head, events)
            if self._detached:
                return

    def _find_head_end(self) -> int | None:
        """End of the blank line closing the header block, if it lies within the size limit."""
        limit = min(len(self._buf), self.max_header_bytes)
        m = _HEAD_END.search(self._buf, self._scan, limit)
        if m is not None:
            return m.end()
        self._scan = max(0, limit - 2)
        return None

    def _partial_cseq(self) -> int | None:
        """CSeq from the complete lines within the size limit of an over-long header block."""
        lines = _split_lines(_decode(bytes(self._buf[: self.max_header_bytes])))
        fields, _ = _parse_fields(lines[1:-1])
        return parse_cseq(CIMultiDict(fields))

    def _handle_head(self, head: bytes, events: list[Event]) -> None:
        lines = _split_lines(_decode(head))[:-2]  # the terminator leaves two empty strings
        fields, problem = _parse_fields(lines[1:])
        headers: CIMultiDict[str] = CIMultiDict(fields)
        cseq = parse_cseq(headers)
        length = _content_length(fields, self.max_body_bytes, cseq)
        message = _parse_start_line(lines[0])
        if not isinstance(message, ParseError):
            if problem is None and len(fields) > self.max_headers:
                problem = f"more than {self.max_headers} headers"
            if problem is not None:
                message = ParseError(400, problem, False)
        if isinstance(message, ParseError):
            events.append(ParseError(message.status, message.reason, False, cseq))
            self._skip = length
            return
        message.headers = headers
        if isinstance(message, Request) and message.version.startswith("HTTP/"):
            self._detached = True
            events.append(message)
        elif length:
            self._pending = message
            self._body_len = length
        else:
            events.append(message)
