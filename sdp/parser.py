"""Parse RFC 8866 text into a :class:`~sdp.model.SessionDescription`.

SDP reaches us from the network (ANNOUNCE bodies, relayed DESCRIBE answers), written by every
encoder and camera firmware there is, so the parser is lenient where real-world SDP is sloppy and
strict only where guessing would be wrong:

- lenient: LF or CRLF line endings, whitespace around lines, blank lines, fields in any order,
  unknown line types and lines that are not ``<letter>=`` (skipped), missing ``o=``/``s=``/``t=``,
  empty ``s=``, repeated single-valued fields (the first wins), UTF-8 or else Latin-1 bytes;
- strict: the first line must be ``v=0``; ``o=``, ``c=``, ``m=``, ``b=`` and ``t=`` lines must
  follow their grammar, since a wrong address, port or format list cannot be patched up safely.

Input is bounded (:data:`MAX_SDP_BYTES`, :data:`MAX_SDP_LINES`) so a peer cannot make us spend
unbounded work. :class:`SdpParseError` is the only exception :func:`parse` raises.
"""

from __future__ import annotations

from .model import (
    Attribute,
    Bandwidth,
    Connection,
    MediaDescription,
    Origin,
    SessionDescription,
    Timing,
)

__all__ = ["MAX_SDP_BYTES", "MAX_SDP_LINES", "SdpParseError", "parse"]

MAX_SDP_BYTES = 64 * 1024
"""Largest accepted input, in bytes (characters when given a str)."""
MAX_SDP_LINES = 2000
"""Most lines accepted, blank ones included."""

_SESSION_ONLY = frozenset("vosueptrz")  # meaningless inside an m= section: skipped there


class SdpParseError(ValueError):
    """Malformed SDP. ``line`` is the 1-based line number, when the fault is on one line."""

    def __init__(self, reason: str, line: int | None = None) -> None:
        self.reason = reason
        self.line = line
        super().__init__(reason if line is None else f"SDP line {line}: {reason}")


def parse(text: str | bytes) -> SessionDescription:
    """Parse an SDP body; raise :class:`SdpParseError` (line number + reason) when it is unusable."""
    lines = _split(_decode(text))
    state = _State()
    started = False
    for lineno, raw in enumerate(lines, start=1):
        line = raw.strip(" \t\r")
        if not line:
            continue
        if not started:
            if line != "v=0":
                raise SdpParseError(f"the first line must be 'v=0', got {_clip(line)!r}", lineno)
            started = True
            continue
        if len(line) >= 2 and line[1] == "=" and "a" <= line[0] <= "z":
            state.feed(line[0], line[2:], lineno)
    if not started:
        raise SdpParseError("empty SDP: expected a first line 'v=0'")
    return state.sd


def _decode(text: str | bytes) -> str:
    if isinstance(text, str):
        if len(text) > MAX_SDP_BYTES:
            raise SdpParseError(f"SDP of {len(text)} characters exceeds the {MAX_SDP_BYTES} limit")
        decoded = text
    else:
        if len(text) > MAX_SDP_BYTES:
            raise SdpParseError(f"SDP of {len(text)} bytes exceeds the {MAX_SDP_BYTES} limit")
        try:
            decoded = bytes(text).decode("utf-8")
        except UnicodeDecodeError:
            # RFC 8866 says UTF-8, but older encoders write Latin-1 session names.
            decoded = bytes(text).decode("latin-1")
    return decoded.removeprefix("\ufeff")


def _split(text: str) -> list[str]:
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    if len(lines) > MAX_SDP_LINES:
        raise SdpParseError(f"SDP of {len(lines)} lines exceeds the {MAX_SDP_LINES} limit")
    return lines


def _clip(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def _uint(text: str, what: str, lineno: int, maximum: int | None = None) -> int:
    # isascii + isdigit: int() would also accept "+1", " 1", "1_0" and non-ASCII digits.
    if not (text.isascii() and text.isdigit() and len(text) <= 20):
        raise SdpParseError(f"{what} {_clip(text)!r} is not a non-negative integer", lineno)
    number = int(text)
    if maximum is not None and number > maximum:
        raise SdpParseError(f"{what} {number} is larger than {maximum}", lineno)
    return number


class _State:
    """Where the parse is: filling the session level, or the latest ``m=`` section."""

    def __init__(self) -> None:
        self.sd = SessionDescription(timings=[])
        self.media: MediaDescription | None = None
        self.seen: set[str] = set()  # single-valued session fields already taken

    def feed(self, kind: str, value: str, lineno: int) -> None:
        if kind == "m":
            self.media = _parse_media(value, lineno)
            self.sd.media.append(self.media)
        elif self.media is not None:
            if kind not in _SESSION_ONLY:
                self._media_field(self.media, kind, value, lineno)
        else:
            self._session_field(kind, value, lineno)

    def _first(self, kind: str) -> bool:
        """True the first time a single-valued session field is met."""
        if kind in self.seen:
            return False
        self.seen.add(kind)
        return True

    def _session_field(self, kind: str, value: str, lineno: int) -> None:
        sd = self.sd
        if kind == "o":
            origin = _parse_origin(value, lineno)
            if self._first(kind):
                sd.origin = origin
        elif kind == "s":
            if self._first(kind):
                sd.session_name = value or " "
        elif kind == "i":
            if self._first(kind):
                sd.information = value
        elif kind == "u":
            if self._first(kind):
                sd.uri = value
        elif kind == "e":
            sd.emails.append(value)
        elif kind == "p":
            sd.phones.append(value)
        elif kind == "c":
            connection = _parse_connection(value, lineno)
            if self._first(kind):
                sd.connection = connection
        elif kind == "b":
            sd.bandwidths.append(_parse_bandwidth(value, lineno))
        elif kind == "t":
            sd.timings.append(_parse_timing(value, lineno))
        elif kind == "r":
            if sd.timings:  # a repeat with no t= before it has nothing to repeat
                sd.timings[-1].repeats.append(value)
        elif kind == "z":
            if self._first(kind):
                sd.time_zones = value
        elif kind == "k":
            if self._first(kind):
                sd.key = value
        elif kind == "a":
            _add_attribute(sd.attributes, value)

    @staticmethod
    def _media_field(m: MediaDescription, kind: str, value: str, lineno: int) -> None:
        if kind == "i":
            if m.title is None:
                m.title = value
        elif kind == "c":
            # RFC 8866 allows several c= lines (layered multicast); we keep the first.
            connection = _parse_connection(value, lineno)
            if m.connection is None:
                m.connection = connection
        elif kind == "b":
            m.bandwidths.append(_parse_bandwidth(value, lineno))
        elif kind == "k":
            if m.key is None:
                m.key = value
        elif kind == "a":
            _add_attribute(m.attributes, value)


def _add_attribute(attributes: list[Attribute], value: str) -> None:
    name, colon, rest = value.partition(":")
    if name:  # "a=" or "a=:x" names nothing; skip it
        attributes.append(Attribute(name, rest if colon else None))


def _parse_origin(value: str, lineno: int) -> Origin:
    fields = value.split()
    if len(fields) != 6:
        raise SdpParseError(
            "o= must be '<username> <sess-id> <sess-version> <nettype> <addrtype> <address>', "
            f"got {len(fields)} fields",
            lineno,
        )
    return Origin(*fields)


def _parse_connection(value: str, lineno: int) -> Connection:
    fields = value.split()
    if len(fields) != 3:
        raise SdpParseError(f"c= must be '<nettype> <addrtype> <address>', got {len(fields)} fields", lineno)
    nettype, addrtype, address = fields
    host, *suffixes = address.split("/")
    # IP6 multicast has no TTL: its only suffix is the address count (RFC 8866 5.7).
    shape = "<address>[/<count>]" if addrtype == "IP6" else "<address>[/<ttl>[/<count>]]"
    if not host or len(suffixes) > (1 if addrtype == "IP6" else 2):
        raise SdpParseError(f"c= address {_clip(address)!r} is not '{shape}'", lineno)
    numbers = [_uint(s, "c= multicast suffix", lineno) for s in suffixes]
    if addrtype == "IP6":
        return Connection(nettype, addrtype, host, None, numbers[0] if numbers else None)
    ttl = numbers[0] if numbers else None
    count = numbers[1] if len(numbers) == 2 else None
    return Connection(nettype, addrtype, host, ttl, count)


def _parse_bandwidth(value: str, lineno: int) -> Bandwidth:
    bwtype, colon, amount = value.partition(":")
    if not colon or not bwtype.strip():
        raise SdpParseError(f"b= must be '<bwtype>:<bandwidth>', got {_clip(value)!r}", lineno)
    return Bandwidth(bwtype.strip(), _uint(amount.strip(), "b= bandwidth", lineno))


def _parse_timing(value: str, lineno: int) -> Timing:
    fields = value.split()
    if len(fields) != 2:
        raise SdpParseError(f"t= must be '<start> <stop>', got {_clip(value)!r}", lineno)
    return Timing(_uint(fields[0], "t= start time", lineno), _uint(fields[1], "t= stop time", lineno))


def _parse_media(value: str, lineno: int) -> MediaDescription:
    fields = value.split()
    if len(fields) < 3:
        raise SdpParseError(
            f"m= must be '<media> <port>[/<count>] <proto> <format> ...', got {_clip(value)!r}", lineno
        )
    media, port_text, proto, *formats = fields
    port_part, slash, count_part = port_text.partition("/")
    port = _uint(port_part, "m= port", lineno, maximum=65535)
    port_count = _uint(count_part, "m= port count", lineno) if slash else None
    return MediaDescription(media, port, proto, formats, port_count=port_count)
