"""Cutting a live path's samples into LL-HLS parts (~200 ms) and segments (~1-2 s, at keyframes).

Sans-I/O: samples go in with their decode times on one timeline per track (each track's own
timescale), parts and segments come out as bytes with their durations; no clock is read (the
wall time of a segment's start, for ``EXT-X-PROGRAM-DATE-TIME``, comes with its first sample).

A sample's duration is known only when the next sample of its track arrives, so each track holds
its latest sample back. The main track (the first video track, else the first audio track)
decides the cuts: a segment begins at a main keyframe once the current one has lasted
``segment_seconds``; a part ends before a main sample that would make it longer than the part
target, and as soon as it reaches the target. Other tracks' samples go into the part that is open
when their duration becomes known (each track has its own ``tfdt``, so a part need not cut every
track at the same instant).

The part target is the configured one rounded to whole frames of the main track (the median of
its first three durations) (the spec wants
every part but a segment's last to last at least 85 % of it and none longer). Segments older than
the DVR window (seconds and bytes) are dropped, oldest first, never below three target durations.
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections import deque
from dataclasses import dataclass, field

from streamd.hls.live_fmp4 import Sample, fragment

log = logging.getLogger(__name__)

PART_SLACK = 0.001  # seconds of rounding a part may exceed its target by (timescale steps)
FRAMES_FOR_TARGET = 3  # main-track durations the part target is rounded by (their median)


@dataclass(slots=True)
class Part:
    msn: int
    index: int
    number: int  # counted over the whole stream: its URI, which a preload hint can name in advance
    duration: float  # seconds (main track)
    independent: bool  # begins with a keyframe of the main track
    data: bytes | memoryview


@dataclass(slots=True)
class Segment:
    msn: int
    start: float  # seconds on the main track's timeline
    wall: float | None  # Unix time of its first sample (program date and time)
    parts: list[Part] = field(default_factory=list)
    duration: float = 0.0
    data: bytes = b""  # set when complete
    complete: bool = False
    # per track: (decode time of its first sample, samples); the first main sample's SHA-1: what
    # finds the segment again in a recording once its bytes left memory (``cold``)
    runs: list[list[int]] = field(default_factory=list)
    key: bytes = b""
    cold: bool = False

    @property
    def size(self) -> int:
        return len(self.data) if self.complete else sum(len(p.data) for p in self.parts)


@dataclass(frozen=True, slots=True)
class SegmenterSettings:
    segment_seconds: float = 1.0
    part_seconds: float = 0.2
    dvr_seconds: float = 180.0
    dvr_bytes: int = 256 * 1024 * 1024
    # a recorded path: segments stay listed this long, their bytes read back from the recording
    # once they left the in-memory window (0: not recorded)
    recorded_seconds: float = 0.0


@dataclass(slots=True)
class _Track:
    track_id: int  # in the init segment (1, 2, ...)
    timescale: int
    main: bool
    held: Sample | None = None
    held_wall: float | None = None
    last_duration: int = 0
    open: list[Sample] = field(default_factory=list)  # samples of the open part


class LiveSegmenter:
    """Parts and segments of one live path, with the DVR window behind them."""

    def __init__(self, timescales: list[int], main: int, settings: SegmenterSettings) -> None:
        self.settings = settings
        self.tracks = [_Track(i + 1, t, i == main) for i, t in enumerate(timescales)]
        self.main = self.tracks[main]
        self.segments: deque[Segment] = deque()  # complete ones (the DVR window), then the open one
        self.open: Segment | None = None
        self.part_target: float | None = None  # fixed once the main track's frame length is known
        self.target_duration = max(1, math.ceil(settings.segment_seconds))
        self.started = False
        self.ended = False
        self.dropped = 0  # samples before the start or with decode times going back
        self.bytes = 0  # held by complete segments
        self._fragments = 0  # moof sequence numbers
        self.parts_made = 0  # the next part's number
        self.by_number: dict[int, Part] = {}  # the parts of the segments in the window
        self._next_msn = 0
        self._part_main = 0  # main samples in the open part
        self._part_duration = 0.0
        self._part_independent = False
        self._start_seconds = 0.0
        self._first_lengths: list[float] = []  # the main track's first sample durations

    # --- input ----------------------------------------------------------------------------

    def push(self, slot: int, sample: Sample, wall: float | None = None) -> list[Part]:
        """One sample of track ``slot`` (decode order); the parts it completed (usually none or one).

        ``wall`` is the Unix time of a main keyframe's presentation (for program date and time)."""
        if self.ended:
            return []
        track = self.tracks[slot]
        if not self.started:
            if not (track.main and sample.keyframe):
                self.dropped += 1
                return []
            self.started = True
            self._start_seconds = sample.dts / track.timescale
        elif not track.main and track.held is None and sample.dts / track.timescale < self._start_seconds:
            self.dropped += 1  # audio from before the first keyframe
            return []
        held, held_wall = track.held, track.held_wall
        if held is not None and sample.dts <= held.dts:
            self.dropped += 1
            return []
        track.held, track.held_wall = sample, wall
        if held is None:
            return []
        done = Sample(held.dts, sample.dts - held.dts, held.cts, held.data, held.keyframe)
        return self._place(track, done, held_wall)

    def finish(self) -> list[Part]:
        """The path went offline: the held samples (as long as the ones before) end the last segment."""
        if self.ended:
            return []
        if self.part_target is None:
            self.part_target = self.settings.part_seconds
        completed: list[Part] = []
        for track in self.tracks:
            held = track.held
            if held is not None and self.started:
                duration = track.last_duration or track.timescale // 25
                last = Sample(held.dts, duration, held.cts, held.data, held.keyframe)
                completed += self._place(track, last, track.held_wall)
            track.held = None
        completed += self._close_part()
        self._close_segment()
        self.ended = True
        return completed

    # --- cutting --------------------------------------------------------------------------

    def _place(self, track: _Track, sample: Sample, wall: float | None) -> list[Part]:
        track.last_duration = sample.duration
        if not track.main:
            track.open.append(sample)
            return []
        completed: list[Part] = []
        seconds = sample.dts / track.timescale
        length = sample.duration / track.timescale
        if self.part_target is None and len(self._first_lengths) < FRAMES_FOR_TARGET:
            self._first_lengths.append(length)
            if len(self._first_lengths) == FRAMES_FOR_TARGET:  # the median: not a first odd frame's
                frame = sorted(self._first_lengths)[FRAMES_FOR_TARGET // 2]
                target = self.settings.part_seconds
                self.part_target = round(frame * max(1, round(target / frame)), 6) if frame > 0 else target
        limit = self.part_target if self.part_target is not None else math.inf
        if self.open is None or (
            sample.keyframe and seconds - self.open.start >= self.settings.segment_seconds - PART_SLACK
        ):
            completed += self._close_part()
            self._close_segment()
            self.open = Segment(self._next_msn, seconds, wall, runs=[[-1, 0] for _ in self.tracks])
            self._next_msn += 1
        elif self._part_main and self._part_duration + length > limit + PART_SLACK:
            completed += self._close_part()
        if not self._part_main:
            self._part_independent = sample.keyframe
        track.open.append(sample)
        self._part_main += 1
        self._part_duration += length
        if self._part_duration >= limit - PART_SLACK:
            completed += self._close_part()
        return completed

    def _close_part(self) -> list[Part]:
        if not self._part_main or self.open is None:
            return []  # other tracks' samples wait for the next part
        runs = [(t.track_id, t.open) for t in self.tracks]
        for t, run in zip(self.tracks, self.open.runs, strict=True):
            if t.open:
                if run[0] < 0:
                    run[0] = t.open[0].dts
                    if t.main:
                        self.open.key = hashlib.sha1(t.open[0].data).digest()
                run[1] += len(t.open)
        self._fragments += 1
        data = fragment(self._fragments, runs)
        for t in self.tracks:
            t.open = []
        part = Part(
            self.open.msn,
            len(self.open.parts),
            self.parts_made,
            self._part_duration,
            self._part_independent,
            data,
        )
        self.by_number[part.number] = part
        self.parts_made += 1
        self.open.parts.append(part)
        self.open.duration += part.duration
        self._part_main, self._part_duration = 0, 0.0
        return [part]

    def _close_segment(self) -> None:
        segment = self.open
        self.open = None
        if segment is None or not segment.parts:
            return
        segment.data = b"".join(bytes(p.data) for p in segment.parts)
        view, offset = memoryview(segment.data), 0
        for part in segment.parts:  # parts become views of the segment: stored once
            size = len(part.data)
            part.data = view[offset : offset + size]
            offset += size
        segment.complete = True
        self.segments.append(segment)
        self.bytes += len(segment.data)
        longer = round(segment.duration + 1e-9)
        if longer > self.target_duration:
            if self.segments[0] is not segment:  # players may have read the old target duration
                log.warning(
                    "live HLS: a %.1f s segment (keyframes that far apart) makes the target duration %d s",
                    segment.duration,
                    longer,
                )
            self.target_duration = longer
        self._evict()

    def _evict(self) -> None:
        """The oldest segments leave memory past ``dvr_seconds``/``dvr_bytes``: gone, or (a recorded
        path) listed on, cold, until ``recorded_seconds``. The playlist never gets shorter than three
        target durations."""
        floor = 3 * self.target_duration
        settings = self.settings
        listed = sum(s.duration for s in self.segments)
        hot = [s for s in self.segments if not s.cold]
        in_memory = sum(s.duration for s in hot)
        kept = listed  # what stays listed if these go (a path not recorded)
        for oldest in hot[:-1]:
            if in_memory <= settings.dvr_seconds and self.bytes <= settings.dvr_bytes:
                break
            if not settings.recorded_seconds:
                if kept - oldest.duration < floor:
                    break
                kept -= oldest.duration
            in_memory -= oldest.duration
            self.bytes -= len(oldest.data)
            for part in oldest.parts:
                self.by_number.pop(part.number, None)
            oldest.parts, oldest.data, oldest.cold = [], b"", True
        while len(self.segments) > 1 and self.segments[0].cold:
            oldest = self.segments[0]
            if listed <= settings.recorded_seconds or listed - oldest.duration < floor:
                break
            self.segments.popleft()
            listed -= oldest.duration

    # --- what the playlist and the requests see ----------------------------------------------

    @property
    def last_complete(self) -> int:
        """The MSN of the last complete segment (-1: none yet)."""
        return self.segments[-1].msn if self.segments else -1

    @property
    def next_part(self) -> tuple[int, int]:
        """(MSN, part index) of the part being made, if it stays in the open segment (a keyframe may
        end that segment first: then it is part 0 of the next). Its number is ``parts_made``."""
        if self.open is not None:
            return self.open.msn, len(self.open.parts)
        return self._next_msn, 0

    def segment(self, msn: int) -> Segment | None:
        """A complete segment still in the window, or the open one."""
        if self.open is not None and self.open.msn == msn:
            return self.open
        if not self.segments or not self.segments[0].msn <= msn <= self.segments[-1].msn:
            return None
        return self.segments[msn - self.segments[0].msn]

    def part(self, msn: int, index: int) -> Part | None:
        segment = self.segment(msn)
        if segment is None or not 0 <= index < len(segment.parts):
            return None
        return segment.parts[index]

    def has_part(self, msn: int, index: int) -> bool:
        """Whether part ``index`` of segment ``msn`` exists (an index past a complete segment's last
        part means part 0 of the next segment, RFC 8216bis 6.2.5.2)."""
        segment = self.segment(msn)
        if segment is not None and segment.complete and index >= len(segment.parts):
            return self.has_part(msn + 1, 0)
        if segment is None:
            return msn <= self.last_complete  # fell out of the window: long since there
        return index < len(segment.parts)
