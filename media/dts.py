"""Decode timestamps for video that arrives with presentation timestamps only (RTP, RFC 6184/7798).

A container needs a DTS per frame that grows strictly and never exceeds the PTS. Frames come in
decode order; with B-frames their PTS go back and forth. If no frame is displayed more than
``depth`` frames after it is decoded, then the ``(depth + 1)``-th largest PTS seen so far is a
valid DTS (it is the PTS of frame ``i - depth`` in display order): what FFmpeg's own guess does
with the decoder's reorder delay. The depth is measured on the first ``lookahead`` frames (held
back until then); frames before the first valid one get DTS spaced one frame step below it.
A stream that later reorders deeper than measured gets its DTS clamped, and where even that is
impossible its PTS is moved up to the DTS (counted in ``adjusted``), so a muxer never refuses it.
"""

from __future__ import annotations

import bisect
import itertools
from typing import Generic, TypeVar

T = TypeVar("T")

DEFAULT_LOOKAHEAD = 16  # H.264/H.265 never reorder deeper than a 16-frame DPB


class DtsGenerator(Generic[T]):
    """Feed ``(pts, item)`` in decode order; get ``(pts, dts, item)`` back in the same order."""

    def __init__(self, lookahead: int = DEFAULT_LOOKAHEAD) -> None:
        if lookahead < 1:
            raise ValueError("lookahead must be at least 1")
        self.lookahead = lookahead
        self.depth: int | None = None  # measured reorder depth, once known
        self.adjusted = 0  # frames whose PTS had to be moved (deeper reordering than measured)
        self._held: list[tuple[int, T]] = []
        self._largest: list[int] = []  # the depth + 1 largest PTS so far, ascending
        self._count = 0
        self._first = 0  # smallest PTS among the frames used to measure the depth
        self._step = 1  # a frame interval, for the DTS of the first ``depth`` frames
        self._last: int | None = None

    def push(self, pts: int, item: T) -> list[tuple[int, int, T]]:
        if self.depth is not None:
            return [self._next(pts, item)]
        self._held.append((pts, item))
        return self._start() if len(self._held) >= self.lookahead else []

    def flush(self) -> list[tuple[int, int, T]]:
        """Everything still held (at the end of the stream)."""
        return self._start() if self.depth is None and self._held else []

    def _start(self) -> list[tuple[int, int, T]]:
        held, self._held = self._held, []
        values = [pts for pts, _ in held]
        order = sorted(range(len(values)), key=lambda i: (values[i], i))
        rank = {i: r for r, i in enumerate(order)}
        self.depth = max(0, max(i - rank[i] for i in range(len(values))))
        ordered = [values[i] for i in order]
        steps = [b - a for a, b in itertools.pairwise(ordered) if b > a]
        self._step = min(steps) if steps else 1
        self._first = ordered[0]
        return [self._next(pts, item) for pts, item in held]

    def _next(self, pts: int, item: T) -> tuple[int, int, T]:
        assert self.depth is not None
        bisect.insort(self._largest, pts)
        if len(self._largest) > self.depth + 1:
            del self._largest[0]
        if len(self._largest) == self.depth + 1:
            dts = self._largest[0]
        else:  # one of the first ``depth`` frames: below the first valid DTS, a frame step apart
            dts = self._first - (self.depth - self._count) * self._step
        self._count += 1
        if self._last is not None and dts <= self._last:
            dts = self._last + 1
        if dts > pts:
            if self._last is None or pts > self._last:
                dts = pts
            else:
                self.adjusted += 1
                pts = dts
        self._last = dts
        return pts, dts, item
