"""RTSP messages as plain values: what the parser yields and what the server serialises.

Headers live in a :class:`multidict.CIMultiDict` because RTSP header names are case-insensitive,
their order matters to some clients, and a few (``Transport`` alternatives aside) may repeat.
Serialising refuses CR/LF in names and values so a header built from client data can never
smuggle a second message onto the wire.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass, field

from multidict import CIMultiDict

from streamd.rtsp.errors import reason_phrase

__all__ = ["InterleavedFrame", "Request", "Response"]

# RFC 7230 token characters: method names and header names.
TOKEN_RE = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# Request-URIs are sent verbatim; the only hard rule is "no whitespace or controls".
_URI_RE = re.compile(r"[^\x00-\x20\x7f]+")
_VERSION_RE = re.compile(r"(?:RTSP|HTTP)/[0-9]+\.[0-9]+")
_BAD_VALUE_RE = re.compile(r"[\r\n\x00]")


def parse_cseq(headers: CIMultiDict[str]) -> int | None:
    """The first ``CSeq`` value that is a non-negative integer, else ``None``."""
    for value in headers.getall("CSeq", []):
        text = value.strip()
        if text.isascii() and text.isdigit():
            return int(text)
    return None


def _coerce_headers(headers: object) -> CIMultiDict[str]:
    if isinstance(headers, CIMultiDict):
        return headers
    return CIMultiDict(headers)  # type: ignore[arg-type]


def _serialise(start_line: str, headers: CIMultiDict[str], body: bytes) -> bytes:
    out = CIMultiDict(headers)
    if body:
        out["Content-Length"] = str(len(body))
    lines = [start_line]
    for name, value in out.items():
        if not TOKEN_RE.fullmatch(name):
            raise ValueError(f"invalid header name {name!r}")
        if _BAD_VALUE_RE.search(value):
            raise ValueError(f"header {name} contains CR, LF or NUL")
        lines.append(f"{name}: {value}")
    head = "\r\n".join(lines) + "\r\n\r\n"
    return head.encode("utf-8") + bytes(body)


@dataclass
class Request:
    """An RTSP (or HTTP, for tunnelling) request. ``headers`` may be given as any mapping or pair list."""

    method: str
    uri: str
    version: str = "RTSP/1.0"
    headers: CIMultiDict[str] = field(default_factory=CIMultiDict)
    body: bytes = b""

    def __post_init__(self) -> None:
        self.headers = _coerce_headers(self.headers)

    @property
    def cseq(self) -> int | None:
        """The request's sequence number, or ``None`` when missing or not an integer."""
        return parse_cseq(self.headers)

    def __bytes__(self) -> bytes:
        """Wire form; sets ``Content-Length`` when there is a body (other headers are sent as given)."""
        # A leading '$' would read as an interleaved frame (RFC 2326 section 10.12).
        if not TOKEN_RE.fullmatch(self.method) or self.method.startswith("$"):
            raise ValueError(f"invalid method {self.method!r}")
        if not _URI_RE.fullmatch(self.uri):
            raise ValueError(f"invalid request URI {self.uri!r}")
        if not _VERSION_RE.fullmatch(self.version):
            raise ValueError(f"invalid version {self.version!r}")
        return _serialise(f"{self.method} {self.uri} {self.version}", self.headers, self.body)


@dataclass
class Response:
    """An RTSP (or HTTP) response; ``reason`` defaults to the standard phrase for ``status``."""

    status: int
    reason: str | None = None
    version: str = "RTSP/1.0"
    headers: CIMultiDict[str] = field(default_factory=CIMultiDict)
    body: bytes = b""

    def __post_init__(self) -> None:
        if self.reason is None:
            self.reason = reason_phrase(self.status)
        self.headers = _coerce_headers(self.headers)

    @property
    def cseq(self) -> int | None:
        """The echoed sequence number, or ``None`` when missing or not an integer."""
        return parse_cseq(self.headers)

    def __bytes__(self) -> bytes:
        """Wire form; sets ``Content-Length`` when there is a body (other headers are sent as given)."""
        if not 100 <= self.status <= 999:
            raise ValueError(f"invalid status {self.status}")
        reason = self.reason or ""
        if _BAD_VALUE_RE.search(reason):
            raise ValueError("reason phrase contains CR, LF or NUL")
        if not _VERSION_RE.fullmatch(self.version):
            raise ValueError(f"invalid version {self.version!r}")
        return _serialise(f"{self.version} {self.status} {reason}", self.headers, self.body)


@dataclass(frozen=True)
class InterleavedFrame:
    """One RTP/RTCP packet carried on the RTSP connection (RFC 2326 section 10.12)."""

    channel: int
    payload: bytes

    def __bytes__(self) -> bytes:
        if not 0 <= self.channel <= 255:
            raise ValueError(f"interleaved channel {self.channel} out of range 0-255")
        if len(self.payload) > 0xFFFF:
            raise ValueError(f"interleaved payload of {len(self.payload)} bytes exceeds 65535")
        return struct.pack("!cBH", b"$", self.channel, len(self.payload)) + bytes(self.payload)
