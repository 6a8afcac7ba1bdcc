"""The ``RTP-Info`` header (RFC 2326 section 12.33): per track, the first RTP packet after PLAY.

Players map ``rtptime`` to the Range start, so it must equal the timestamp of the first packet
actually sent on that track (an ``rtptime`` ahead of the packets makes ffmpeg compute huge offsets).

Parsing is lenient and never raises (it serves test clients and the relay): entries without a
``url`` are dropped, unreadable numbers become None, and a comma or semicolon that does not start
a new entry or a known parameter is taken as part of the URL.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from streamd.rtsp.headers.transport import split_unquoted, unquote

__all__ = ["RtpInfoEntry", "format_rtp_info", "parse_rtp_info"]

_ENTRY_START = re.compile(r"\s*url\s*=", re.IGNORECASE)
_PARAMS = ("seq", "rtptime", "ssrc")


@dataclass(frozen=True)
class RtpInfoEntry:
    """One track: its control URL, first sequence number and first RTP timestamp."""

    url: str
    seq: int | None = None
    rtptime: int | None = None


def format_rtp_info(entries: Iterable[RtpInfoEntry]) -> str:
    """``url=...;seq=123;rtptime=456,url=...``; unknown values are left out."""
    out = []
    for entry in entries:
        text = f"url={entry.url}"
        if entry.seq is not None:
            text += f";seq={entry.seq}"
        if entry.rtptime is not None:
            text += f";rtptime={entry.rtptime}"
        out.append(text)
    return ",".join(out)


def _number(text: str | None, maximum: int) -> int | None:
    if text is None:
        return None
    text = text.strip()
    if not (text.isascii() and text.isdigit()) or len(text) > 10 or int(text) > maximum:
        return None
    return int(text)


def _parse_entry(text: str) -> RtpInfoEntry | None:
    segments = split_unquoted(text, ";")
    params: dict[str, str] = {}
    # Known parameters are peeled off the end; whatever is left (even with ';') is the URL.
    while len(segments) > 1:
        name, eq, value = segments[-1].partition("=")
        key = name.strip().lower()
        if not eq or key not in _PARAMS:
            break
        params.setdefault(key, value)
        segments.pop()
    _, _, url = ";".join(segments).partition("=")
    url = unquote(url)
    if not url:
        return None
    return RtpInfoEntry(url, _number(params.get("seq"), 0xFFFF), _number(params.get("rtptime"), 0xFFFFFFFF))


def parse_rtp_info(value: str) -> list[RtpInfoEntry]:
    """Every readable entry, in order. Never raises."""
    pieces: list[str] = []
    for piece in split_unquoted(value, ","):
        if _ENTRY_START.match(piece) or not pieces:
            pieces.append(piece)
        else:
            pieces[-1] += "," + piece
    entries = []
    for piece in pieces:
        if _ENTRY_START.match(piece) and (entry := _parse_entry(piece)) is not None:
            entries.append(entry)
    return entries
