"""Where a file's keyframes are, found without decoding or remuxing: the cut points of HLS
segments, so a playlist lists every segment of a long file at once.

MP4/MOV files carry a sample index (``stream.index_entries``: DTS, keyframe flag, byte position),
read here in milliseconds; samples past the end of a truncated file are left out. Other containers
are demuxed once (packets only: flags and timestamps, nothing decoded). Audio-only files cut at
any packet, every ``AUDIO_STEP`` at most.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal

import av

from media.errors import MediaError, UnsupportedMedia
from media.probe import open_container

AUDIO_STEP = Fraction(1, 4)  # audio-only files: cut points at least this far apart (seconds)
INDEXED = ("mov", "mp4")  # FFmpeg format names whose index lists every sample


@dataclass(frozen=True, slots=True)
class CutPoint:
    """A reference-track packet a segment may start with: its DTS (``by`` "dts") or PTS
    (``by`` "pts") in the track's ticks, and the PTS in seconds (file time)."""

    ticks: int
    seconds: Fraction


@dataclass(frozen=True)
class KeyframeIndex:
    reference: int  # stream index the cuts belong to: the first video track, else the first audio
    by: Literal["dts", "pts"]  # which timestamp ``CutPoint.ticks`` is
    points: tuple[CutPoint, ...]
    first_dts: Fraction  # seconds: the earliest DTS of the chosen tracks (may be negative)
    end: Fraction  # seconds: where the last frame of the chosen tracks ends
    time_base: Fraction  # of the reference track


def build(path: str | os.PathLike[str], streams: list[int]) -> KeyframeIndex:
    """The cut points of ``path`` for the tracks ``streams`` (blocking: run it in a worker).

    MediaError when the reference track has no keyframe (nothing to start a segment with)."""
    container = open_container(path)
    try:
        chosen = [s for s in container.streams if s.index in streams]
        if not chosen:
            raise UnsupportedMedia(f"{path}: no audio or video track")
        video = [s for s in chosen if s.type == "video"]
        ref = video[0] if video else chosen[0]
        kind = "keyframe" if ref.type == "video" else "packet"  # streams are gone once closed
        if any(name in container.format.name.split(",") for name in INDEXED) and len(ref.index_entries):
            index = _from_sample_index(Path(path), container, ref, chosen)
        else:
            index = _from_packets(container, ref, chosen)
    except av.FFmpegError as exc:
        raise MediaError(f"{path}: cannot read the file's index ({exc})") from exc
    finally:
        container.close()
    if not index.points:
        raise MediaError(f"{path}: no {kind} to start a segment with (damaged or empty track)")
    return index


def _from_sample_index(path: Path, container: Any, ref: Any, chosen: list[Any]) -> KeyframeIndex:
    size = path.stat().st_size
    tb = Fraction(ref.time_base)
    delay = _keyframe_delay(container, ref)  # PTS - DTS of a keyframe (B-frames), in ticks
    entries = [e for e in ref.index_entries if e.pos + e.size <= size]  # a truncated file's end
    if ref.type == "video":
        points = [CutPoint(e.timestamp, (e.timestamp + delay) * tb) for e in entries if e.is_keyframe]
    else:
        points = _thin([CutPoint(e.timestamp, e.timestamp * tb) for e in entries])
    first, end = [], []
    for stream in chosen:
        stb = Fraction(stream.time_base)
        kept = [e for e in stream.index_entries if e.pos + e.size <= size]
        if not kept:
            continue
        first.append(kept[0].timestamp * stb)
        step = (kept[-1].timestamp - kept[-2].timestamp) if len(kept) > 1 else 0
        end.append((kept[-1].timestamp + step + (delay if stream is ref else 0)) * stb)
    start, stop = min(first or [Fraction(0)]), max(end or [Fraction(0)])
    return KeyframeIndex(ref.index, "dts", tuple(points), start, stop, tb)


def _keyframe_delay(container: Any, ref: Any) -> int:
    """How much later than its DTS the first keyframe is shown (0 without B-frames)."""
    if ref.type != "video":
        return 0
    for count, packet in enumerate(container.demux(ref)):
        if count > 300:
            break
        if packet.is_keyframe and packet.pts is not None and packet.dts is not None:
            return packet.pts - packet.dts
    return 0


def _from_packets(container: Any, ref: Any, chosen: list[Any]) -> KeyframeIndex:
    tb = Fraction(ref.time_base)
    points: list[CutPoint] = []
    first: Fraction | None = None
    end = Fraction(0)
    try:
        for packet in container.demux(chosen):
            if packet.size == 0 or (packet.pts is None and packet.dts is None):
                continue
            ptb = Fraction(packet.time_base)
            stamp = packet.dts if packet.dts is not None else packet.pts
            first = stamp * ptb if first is None else min(first, stamp * ptb)
            pts = packet.pts if packet.pts is not None else packet.dts
            end = max(end, (pts + (packet.duration or 0)) * ptb)
            if packet.stream.index == ref.index and (packet.is_keyframe or ref.type != "video"):
                points.append(CutPoint(pts, pts * tb))
    except (av.FFmpegError, EOFError):
        pass  # a truncated or damaged end: cut what could be read
    if ref.type != "video":
        points = _thin(points)
    return KeyframeIndex(ref.index, "pts", tuple(points), first or Fraction(0), end, tb)


def _thin(points: list[CutPoint]) -> list[CutPoint]:
    """Audio cut points at least ``AUDIO_STEP`` apart (a long file has millions of packets)."""
    kept: list[CutPoint] = []
    for point in points:
        if not kept or point.seconds - kept[-1].seconds >= AUDIO_STEP:
            kept.append(point)
    return kept
