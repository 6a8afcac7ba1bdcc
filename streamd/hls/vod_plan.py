"""How an on-demand file is cut into HLS segments (sans-I/O: from its keyframe index).

Cuts fall on the reference track's keyframes (audio packets for audio-only files): each segment
ends at the first cut point at least ``target`` seconds after its start, so segments last
``target`` up to ``target`` + one GOP; a tail shorter than a quarter of ``target`` joins the
segment before it. Every segment is listed at once: players see the whole timeline.

EXTINF durations run from keyframe to keyframe in presentation time; what the first segment
holds before its keyframe (audio priming, the B-frame delay) is not counted. Players place segment
n at first timestamp + the durations before it, and FFmpeg's HLS demuxer seeks backwards to that
place and drops what precedes it: counting the lead-in put every segment start after its own
keyframe's DTS, so seeks landed a whole segment late.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

from media.keyframe_index import CutPoint, KeyframeIndex

TOLERANCE = Fraction(1, 1000)  # seconds: a GOP of 1.9999 s still makes 2 s segments


@dataclass(frozen=True)
class SegmentSpan:
    number: int
    start: CutPoint | None  # None: from the file's start (segment 0 takes what precedes the cut)
    end: CutPoint | None  # None: to the file's end
    duration: Fraction  # seconds, as the playlist says (EXTINF)


def cut(index: KeyframeIndex, target: Fraction) -> tuple[SegmentSpan, ...]:
    """The segments of the file ``index`` describes, about ``target`` seconds each."""
    points = index.points
    cuts = [0]
    for i, point in enumerate(points):
        if point.seconds - points[cuts[-1]].seconds >= target - TOLERANCE:
            cuts.append(i)
    if len(cuts) > 1 and index.end - points[cuts[-1]].seconds < target / 4:
        cuts.pop()
    spans = []
    for n, at in enumerate(cuts):
        start = points[at]
        end = points[cuts[n + 1]] if n + 1 < len(cuts) else None
        stop = end.seconds if end is not None else max(index.end, start.seconds + Fraction(1, 1000))
        spans.append(SegmentSpan(n, None if n == 0 else start, end, stop - start.seconds))
    return tuple(spans)


def target_duration(spans: tuple[SegmentSpan, ...]) -> int:
    """EXT-X-TARGETDURATION: every EXTINF rounded to the nearest integer is at most this
    (RFC 8216 4.3.3.1)."""
    return max(1, max(math.floor(s.duration + Fraction(1, 2)) for s in spans))


def shift(index: KeyframeIndex) -> Fraction:
    """Seconds added to every timestamp so that none is negative (fragment decode times are
    unsigned; MP4 files with B-frames or AAC priming start below zero)."""
    return max(Fraction(0), -index.first_dts)
