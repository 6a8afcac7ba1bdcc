"""A file's conversion for WebRTC viewers, cut into keyframe-aligned chunks (sans-I/O).

Each viewer of a file has its own position, so converting as it plays would convert once per
viewer. Instead a file is cut at its keyframes (``media.keyframe_index``, cut as HLS segments are
by ``hls.vod_plan``) into chunks of ``CHUNK_SECONDS`` or more; each chunk is converted once
(``chunk_convert``), kept in a shared cache (``chunk_cache``), and every viewer reads chunk after
chunk from wherever it stands with a :class:`ChunkReader`, which is only a list walk. A chunk
grows while it is converted, and its viewers read what is there: a first picture waits for the
first pictures converted, not for the chunk (a default x264/x265 file's GOP lasts 10 s).

A chunk holds every track the viewers take, merged by decode time: converted video (baseline
H.264 from the chunk's keyframe on, parameter sets at each IDR), Opus on a 20 ms grid of file
time (frame ``j`` is file time ``j / 50`` s, whichever chunk made it, so chunks join without a
gap), and what needs no conversion as it is in the file.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction

from media.access_unit import AccessUnit
from media.errors import MediaError
from media.keyframe_index import CutPoint, KeyframeIndex
from streamd.hls.vod_plan import cut

UNIT_OVERHEAD = 100  # bytes an access unit costs beyond its data (the object, its tuple slot)
# a chunk lasts this long at least (keyframe to keyframe): each opens a decoder and an encoder and
# decodes its audio from a little earlier, and a seek lands on its IDRs (one a second) anyway
CHUNK_SECONDS = Fraction(1)


@dataclass(frozen=True)
class ChunkPlan:
    """Where a file's chunks begin: chunk 0 at the file's start, chunk n > 0 at ``starts[n]``,
    a keyframe of the ``reference`` track (``by`` says which timestamp its ticks are)."""

    reference: int
    by: str
    starts: tuple[CutPoint | None, ...]

    def __len__(self) -> int:
        return len(self.starts)

    def start(self, n: int) -> CutPoint | None:
        return self.starts[n]

    def end(self, n: int) -> CutPoint | None:
        """Where chunk ``n`` ends: the next one's keyframe (None: the file's end)."""
        return self.starts[n + 1] if n + 1 < len(self.starts) else None

    def chunk_at(self, seconds: Fraction) -> int:
        """The chunk holding file time ``seconds`` (by the index's keyframe times)."""
        times = [p.seconds for p in self.starts[1:] if p is not None]
        return bisect.bisect_right(times, seconds)


def plan(index: KeyframeIndex, target: Fraction = CHUNK_SECONDS) -> ChunkPlan:
    spans = cut(index, target)
    return ChunkPlan(index.reference, index.by, tuple(s.start for s in spans))


class Chunk:
    """One converted chunk, shared by every viewer of the file. It grows while it is converted
    (viewers read what is there: a first picture need not wait for the whole chunk), then it is
    ``complete`` and never changes again. Changed only on the event loop; ``watchers`` are called
    after each change."""

    def __init__(self, number: int) -> None:
        self.number = number
        self.units: list[AccessUnit] = []  # every track, in decode-time order
        self.starts: list[Fraction] = []  # file seconds a viewer may start at (video keyframes), ascending
        self.complete = False
        self.final = False  # nothing comes after it (the file's last chunk, or it is damaged here)
        self.error: BaseException | None = None  # the conversion failed: viewers end with it
        self.nbytes = 0
        self.watchers: list[Callable[[], None]] = []

    def add(self, units: list[AccessUnit], starts: list[Fraction]) -> None:
        self.units += units
        self.starts += starts
        self.nbytes += sum(len(u.data) + UNIT_OVERHEAD for u in units)
        self._changed()

    def finish(self, final: bool) -> None:
        self.complete, self.final = True, final
        self._changed()

    def fail(self, error: BaseException) -> None:
        self.error = error
        self.finish(True)

    def _changed(self) -> None:
        watchers, self.watchers = self.watchers, []
        for watcher in watchers:
            watcher()


class ChunkReader:
    """A viewer's reader over a file's chunks, as ``Playback`` reads a file (``read``/``seek``).

    Chunks are handed in with ``give`` by whoever fetched them; when ``read`` needs one it does not
    have, or has read all a growing chunk holds so far, it returns None with ``waiting_for`` set
    and ``waiting_at`` the units of it already read (the end of the file leaves it None)."""

    KEEP = 3  # chunks held at most (the one read, the next, a seek's target)

    def __init__(self, plan: ChunkPlan, time_bases: dict[int, Fraction]) -> None:
        self.plan = plan
        self.time_bases = time_bases
        self.waiting_for: int | None = None
        self.waiting_at = 0
        self._chunks: dict[int, Chunk] = {}
        self._n = 0
        self._at = 0
        self._skip_before: Fraction | None = None  # after a seek into a chunk: units before this
        self._ended = False

    def held(self, n: int) -> Chunk | None:
        return self._chunks.get(n)

    def give(self, n: int, chunk: Chunk) -> None:
        self._chunks[n] = chunk
        for old in sorted(self._chunks):
            if len(self._chunks) <= self.KEEP:
                break
            if old not in (n, self._n, self._n + 1):
                del self._chunks[old]

    def next_wanted(self) -> int | None:
        """The chunk after the one being read, when the reader does not hold it yet."""
        chunk = self._chunks.get(self._n)
        n = self._n + 1
        if self._ended or chunk is None or not chunk.complete or chunk.final or n >= len(self.plan):
            return None
        if n in self._chunks:
            return None
        return n

    def chunk_at(self, seconds: Fraction) -> int:
        return self.plan.chunk_at(seconds)

    def seek(self, seconds: Fraction) -> Fraction:
        """Go to the chunk holding ``seconds``: its last keyframe at or before ``seconds`` when the
        chunk is held, else its start. Returns where playback starts."""
        n = self.plan.chunk_at(seconds)
        self._n, self._at, self._ended, self.waiting_for = n, 0, False, None
        self._skip_before = None
        chunk = self._chunks.get(n)
        if chunk is None or not chunk.starts:
            point = self.plan.start(n)
            return point.seconds if point is not None else seconds
        at = bisect.bisect_right(chunk.starts, seconds) - 1
        start = chunk.starts[max(at, 0)]
        self._skip_before = start
        return start

    def read(self) -> AccessUnit | None:
        while not self._ended:
            chunk = self._chunks.get(self._n)
            if chunk is None or (self._at >= len(chunk.units) and not chunk.complete):
                self.waiting_for, self.waiting_at = self._n, self._at if chunk is not None else 0
                return None
            self.waiting_for = None
            if self._at < len(chunk.units):
                au = chunk.units[self._at]
                self._at += 1
                if (
                    self._skip_before is not None
                    and au.pts * self.time_bases[au.stream_index] < self._skip_before
                ):
                    continue
                return au
            if chunk.error is not None:
                self._ended = True
                raise MediaError(f"converting chunk {self._n} failed: {chunk.error}")
            if chunk.final or self._n + 1 >= len(self.plan):
                self._ended = True
                break
            del self._chunks[self._n]
            self._n, self._at, self._skip_before = self._n + 1, 0, None
        return None

    def close(self) -> None:
        self._chunks.clear()
        self._ended = True
