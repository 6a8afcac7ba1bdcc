"""What an HLS request asks for, from the last part of its URL (sans-I/O).

aiohttp's routes split ``/hls/<path>/<rendition>/<name>``; this module says what ``<name>`` in
``<rendition>`` means, or that it means nothing (then the answer is 404).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

Format = Literal["fmp4", "ts"]
MAX_SEGMENT = 10_000_000  # more segments than any file has; keeps numbers small

_RENDITION = re.compile(r"main|a(0|[1-9][0-9]{0,3})")
_SEGMENT = re.compile(r"(0|[1-9][0-9]{0,7})\.(m4s|ts)")


@dataclass(frozen=True)
class MediaPlaylist:
    rendition: str
    format: Format


@dataclass(frozen=True)
class InitSegment:
    rendition: str


@dataclass(frozen=True)
class Segment:
    rendition: str
    number: int
    format: Format


Target = MediaPlaylist | InitSegment | Segment


def audio_index(rendition: str) -> int | None:
    """The stream index an ``a<N>`` rendition names (None for ``main``)."""
    return int(rendition[1:]) if rendition.startswith("a") else None


def parse(rendition: str, name: str) -> Target | None:
    """The object ``<rendition>/<name>`` names, or None (not an HLS object of ours)."""
    if not _RENDITION.fullmatch(rendition):
        return None
    if name == "media.m3u8":
        return MediaPlaylist(rendition, "fmp4")
    if name == "ts.m3u8":
        return MediaPlaylist(rendition, "ts")
    if name == "init.mp4":
        return InitSegment(rendition)
    match = _SEGMENT.fullmatch(name)
    if match is None:
        return None
    number = int(match.group(1))
    if number > MAX_SEGMENT:
        return None
    return Segment(rendition, number, "fmp4" if match.group(2) == "m4s" else "ts")


def segment_name(number: int, fmt: Format) -> str:
    return f"{number}.{'m4s' if fmt == 'fmp4' else 'ts'}"


def playlist_name(fmt: Format) -> str:
    return "media.m3u8" if fmt == "fmp4" else "ts.m3u8"
