"""Incremental base64 decoding for the client-to-server half of an RTSP-over-HTTP tunnel.

The POST body of a QuickTime-style tunnel is base64 text, written by the client one message
at a time: each piece may end in ``=`` padding and the next piece starts a fresh quantum, and
TCP may split the text anywhere. This decoder takes text in arbitrary pieces and returns the
bytes of every complete 4-character quantum, keeping at most three characters between calls.
Line breaks and spaces are skipped (some clients wrap lines); any other non-alphabet character
is an error. Sans-I/O: no sockets, no clocks.
"""

from __future__ import annotations

import binascii
import re

__all__ = ["Base64Error", "Base64Stream"]

_ALPHABET = re.compile(rb"[A-Za-z0-9+/=]*")
_SKIPPED = re.compile(rb"[ \t\r\n]+")


class Base64Error(ValueError):
    """The tunnel text is not base64; the connection cannot carry on."""


class Base64Stream:
    def __init__(self) -> None:
        self._pending = b""  # fewer than four characters of an unfinished quantum

    def feed(self, text: bytes) -> bytes:
        """The bytes decoded from every quantum completed by ``text``; raises :class:`Base64Error`."""
        chars = self._pending + _SKIPPED.sub(b"", text)
        if not _ALPHABET.fullmatch(chars):
            raise Base64Error("invalid character in tunnelled base64 data")
        usable = len(chars) - len(chars) % 4
        self._pending = chars[usable:]
        out = bytearray()
        start = 0
        while start < usable:
            pad = chars.find(b"=", start, usable)
            # a quantum with padding ends one encoded piece; decode pieces one by one
            end = usable if pad < 0 else (pad // 4 + 1) * 4
            piece = chars[start:end]
            if b"=" in piece[:-4] or not _valid_tail(piece[-4:]):
                raise Base64Error("misplaced padding in tunnelled base64 data")
            try:
                out += binascii.a2b_base64(piece, strict_mode=True)
            except binascii.Error as exc:
                raise Base64Error(f"invalid tunnelled base64 data: {exc}") from exc
            start = end
        return bytes(out)

    @property
    def pending(self) -> int:
        """Characters held back until their quantum completes (0 to 3)."""
        return len(self._pending)


def _valid_tail(quantum: bytes) -> bool:
    """Padding may only be ``xx==`` or ``xxx=`` at the end of a quantum."""
    pad = quantum.find(b"=")
    return pad < 0 or (pad >= 2 and quantum[pad:] == b"=" * (4 - pad))
