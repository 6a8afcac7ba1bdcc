"""What the targets share: turning fuzz bytes into text, chunk sizes and RTP packets."""

from __future__ import annotations

from collections.abc import Iterator


def text(data: bytes) -> str:
    """Header text the way the RTSP parser makes it: UTF-8, else Latin-1 (never fails)."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def header_text(data: bytes) -> str:
    """A header value as the parser hands it on: decoded like :func:`text`, and without CR, LF or
    NUL (the parser refuses those in values; folded lines arrive joined by a space)."""
    return text(data).replace("\r", " ").replace("\n", " ").replace("\x00", " ")


def chunks(data: bytes) -> Iterator[bytes]:
    """``data`` minus its first byte, cut into pieces whose sizes that byte chooses (1..256 cycling),
    so one input also tests how a stream parser copes with TCP splitting it anywhere."""
    if not data:
        return
    step, rest = data[0], data[1:]
    sizes = (1, 2, 3, 7, 64, 1024, len(rest) or 1)
    pos = 0
    n = step
    while pos < len(rest):
        size = sizes[n % len(sizes)] + (n >> 4)
        yield rest[pos : pos + size]
        pos += size
        n += 1


def framed(data: bytes) -> Iterator[bytes]:
    """Records of a 16-bit big-endian length then that many bytes (how the corpora store several
    RTP/RTCP packets in one input); a length running past the end takes what is left."""
    pos = 0
    while pos < len(data):
        size = int.from_bytes(data[pos : pos + 2], "big")
        pos += 2
        yield data[pos : pos + size]
        pos += size


def frame(records: list[bytes]) -> bytes:
    """The inverse of :func:`framed` (for making seeds)."""
    return b"".join(len(r).to_bytes(2, "big") + r for r in records)
