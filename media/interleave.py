"""Put access units of several tracks back in DTS order, with bounded read-ahead.

Containers do not promise that tracks are interleaved finely: a fragmented MP4 may hold a second
of video and then the same second of audio, a badly muxed file long runs of one track. Sent in
file order and paced by DTS, each run of the later track would leave in one burst, up to a run's
length late. The merger holds units per track and always hands out the one with the earliest DTS
(in seconds) once every track has one waiting, so each track keeps its own schedule.

Memory is bounded: when the units held span more than ``max_seconds`` of media, or exceed
``max_units`` or ``max_bytes`` (``full``: a track that ended early, a sparse track, runs longer
than the bound), the caller may read the starved track from elsewhere (the reader opens a second
demuxer for it) or take the earliest unit anyway; a unit that then arrives behind what was
already handed out is late by that much, which is counted (``late_units``, ``worst_lateness``)
for the caller to report. Sans-I/O: no files, no clock.
"""

from __future__ import annotations

import math
from collections import deque
from fractions import Fraction

from media.access_unit import AccessUnit

MAX_SECONDS = Fraction(8)
MAX_UNITS = 4096
MAX_BYTES = 32 * 1024 * 1024


class DtsMerger:
    """Re-interleaves the access units of the tracks ``time_bases`` names, by DTS."""

    def __init__(
        self,
        time_bases: dict[int, Fraction],
        *,
        max_seconds: Fraction = MAX_SECONDS,
        max_units: int = MAX_UNITS,
        max_bytes: int = MAX_BYTES,
    ) -> None:
        # exact and cheap: each DTS in ticks of one clock that every track's time base divides
        self._scale = math.lcm(*(Fraction(tb).denominator for tb in time_bases.values()), 1)
        self._factor = {i: int(Fraction(tb) * self._scale) for i, tb in time_bases.items()}
        self._buffers: dict[int, deque[tuple[int, int, AccessUnit, int]]] = {i: deque() for i in time_bases}
        self.max_seconds, self.max_units, self.max_bytes = max_seconds, max_units, max_bytes
        self._max_ticks = max_seconds * self._scale
        self._count = 0  # arrival order, the tie-break between equal DTS
        self._units = 0
        self._bytes = 0
        self._last_out: int | None = None  # ticks
        self._finished: set[int] = set()  # tracks with no more units (until ``clear``)
        self.late_units = 0
        self.worst_lateness = 0.0  # seconds

    @property
    def held(self) -> int:
        """Units waiting (for tests and memory accounting)."""
        return self._units

    def push(self, au: AccessUnit) -> None:
        """One unit in file order (units of one track must come in DTS order)."""
        size = len(au.data) + sum(map(len, au.nal_units))
        self._buffers[au.stream_index].append((au.dts * self._factor[au.stream_index], self._count, au, size))
        self._count += 1
        self._units += 1
        self._bytes += size

    def wants_more(self) -> bool:
        """Whether the caller should read on: a track has nothing waiting and the bounds allow it."""
        return bool(self.starved()) and not self.full

    def starved(self) -> list[int]:
        """Tracks with nothing waiting that may still have units to come."""
        return [i for i, b in self._buffers.items() if not b and i not in self._finished]

    def finish(self, index: int) -> None:
        """Track ``index`` has no more units: stop waiting for it."""
        self._finished.add(index)

    @property
    def full(self) -> bool:
        """The read-ahead bound is reached: hand out what is held even if a track is starved."""
        if self._units >= self.max_units or self._bytes >= self.max_bytes:
            return True
        first = last = None
        for buffer in self._buffers.values():
            if buffer:
                head, tail = buffer[0][0], buffer[-1][0]
                first = head if first is None or head < first else first
                last = tail if last is None or tail > last else last
        return first is not None and last is not None and last - first >= self._max_ticks

    def pop(self) -> AccessUnit | None:
        """The waiting unit with the earliest DTS (the earliest read among equals), if any."""
        best: deque[tuple[int, int, AccessUnit, int]] | None = None
        for buffer in self._buffers.values():
            if buffer and (best is None or buffer[0][:2] < best[0][:2]):
                best = buffer
        if best is None:
            return None
        ticks, _, au, size = best.popleft()
        self._units -= 1
        self._bytes -= size
        if self._last_out is not None and ticks < self._last_out:
            self.late_units += 1
            self.worst_lateness = max(self.worst_lateness, (self._last_out - ticks) / self._scale)
        else:
            self._last_out = ticks
        return au

    def clear(self) -> None:
        """Forget everything held (a seek)."""
        for buffer in self._buffers.values():
            buffer.clear()
        self._units = self._bytes = 0
        self._last_out = None
        self._finished.clear()
