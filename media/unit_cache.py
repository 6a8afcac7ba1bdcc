"""Access units of small files kept in memory, shared by every session playing them.

Demuxing is the largest cost per on-demand session (PyAV reads and parses the whole file once
per viewer). For files up to a size bound, the units are read once, in a worker thread, and every
later session iterates over the same list: seeking is a binary search, looping a timestamp
offset. Larger files, and sessions that start before a file is cached, use ``MediaReader``.
"""

from __future__ import annotations

import bisect
import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from fractions import Fraction
from pathlib import Path
from typing import Any

from media.access_unit import AccessUnit
from media.errors import MediaError
from media.reader import MediaReader
from media.track import MediaInfo

log = logging.getLogger(__name__)

MAX_FILE_BYTES = 64 * 1024 * 1024
BUDGET_BYTES = 512 * 1024 * 1024
AUDIO_TOLERANCE = Fraction(1, 20)


@dataclass(frozen=True)
class CachedMedia:
    """Every access unit of the chosen tracks, in decode order, with a keyframe index."""

    info: MediaInfo
    indices: frozenset[int]
    units: tuple[AccessUnit, ...]
    seconds: tuple[Fraction, ...]  # PTS of each unit in seconds (file time)
    keyframes: tuple[tuple[Fraction, int], ...]  # (PTS seconds, unit position) of the reference track
    reference: int
    loop_period: Fraction
    size: int
    # for the sender side: whatever it derives once from these units for all sessions (RTP
    # payloads); media knows nothing of RTP, so it is kept here untyped
    sender_memo: dict[str, Any] = field(default_factory=dict)

    @property
    def unit_ids(self) -> frozenset[int]:
        """Identities of the cached units (stable: the units live as long as this object)."""
        ids = self.sender_memo.get("_unit_ids")
        if ids is None:
            ids = self.sender_memo["_unit_ids"] = frozenset(map(id, self.units))
        return ids

    def position_of(self, stream_index: int, dts: int) -> int | None:
        """Where the unit of this track with this DTS is (None: no such unit)."""
        index = self.sender_memo.get("_positions")
        if index is None:
            index = self.sender_memo["_positions"] = {
                (au.stream_index, au.dts): i for i, au in enumerate(self.units)
            }
        return index.get((stream_index, dts))

    @classmethod
    def load(cls, path: Path, info: MediaInfo, indices: frozenset[int]) -> CachedMedia:
        with MediaReader(path, info, sorted(indices)) as reader:
            units = []
            while (au := reader.read()) is not None:
                units.append(au)
        tracks = {t.index: t for t in info.tracks}
        videos = sorted(i for i in indices if tracks[i].kind == "video")
        reference = videos[0] if videos else min(indices)
        seconds = tuple(au.pts * tracks[au.stream_index].time_base for au in units)
        keyframes = tuple(
            (seconds[i], i)
            for i, au in enumerate(units)
            if au.stream_index == reference and (au.keyframe or not videos)
        )
        ends = [seconds[i] + au.duration * tracks[au.stream_index].time_base for i, au in enumerate(units)]
        starts = [t.start_time for t in info.tracks if t.index in indices and t.start_time is not None]
        start = min(starts) if starts else Fraction(0)
        period = (max(ends) - start) if ends else Fraction(0)
        size = sum(len(au.data) + sum(len(n) for n in au.nal_units) for au in units)
        return cls(info, indices, tuple(units), seconds, keyframes, reference, period, size * 2)


class CachedReader:
    """The MediaReader interface over a CachedMedia, for the tracks a session set up."""

    def __init__(self, media: CachedMedia, stream_indices: list[int], *, loop: bool = False) -> None:
        self.media = media
        self._media = media
        self._wanted = set(stream_indices)
        self._loop = loop and media.loop_period > 0
        self._position = 0
        self._pass = 0
        self._drop_audio_before: Fraction | None = None
        self._time_base = {t.index: t.time_base for t in media.info.tracks}
        self._skip_end = 0  # after ``resume_after``: below this position, skip units already read
        self._read_upto: dict[int, int] = {}

    def resume_after(self, read_upto: dict[int, int]) -> bool:
        """Continue where another reader of the same file stopped (its last DTS per track).

        For a session that started before the file was cached: it moves over to the cache
        without repeating or skipping a unit. False (nothing changed) if a track has no unit
        read yet or a DTS is not in the cache.
        """
        if self._loop or not self._wanted <= read_upto.keys():
            return False
        positions = [self._media.position_of(i, read_upto[i]) for i in self._wanted]
        if any(p is None for p in positions):
            return False
        found = [p for p in positions if p is not None]
        self._position = min(found) + 1
        self._skip_end = max(found) + 1
        self._read_upto = {i: read_upto[i] for i in self._wanted}
        self._pass = 0
        self._drop_audio_before = None
        return True

    def read(self) -> AccessUnit | None:
        units = self._media.units
        while True:
            if self._position >= len(units):
                if not self._loop:
                    return None
                self._pass += 1
                self._position = 0
                self._drop_audio_before = None
            i = self._position
            self._position += 1
            au = units[i]
            if au.stream_index not in self._wanted:
                continue
            if i < self._skip_end and au.dts <= self._read_upto[au.stream_index]:
                continue  # read by the reader we took over from
            if self._pass and au.pts < 0:
                continue  # priming frames belong to the first pass only
            if (
                self._drop_audio_before is not None
                and au.stream_index != self._media.reference
                and self._media.seconds[i] < self._drop_audio_before
            ):
                continue
            if not self._pass:
                return au
            shift = round(self._pass * self._media.loop_period / self._time_base[au.stream_index])
            return replace(au, pts=au.pts + shift, dts=au.dts + shift)

    def seek(self, seconds: Fraction) -> Fraction:
        """Restart at the keyframe at or before ``seconds`` (file time); returns its time."""
        keys = self._media.keyframes
        if not keys:
            raise MediaError("no keyframe to seek to")
        at = max(0, bisect.bisect_right(keys, (seconds, len(self._media.units))) - 1)
        key_time, key_position = keys[at]
        start = key_position
        units, times = self._media.units, self._media.seconds
        while (
            start > 0
            and units[start - 1].stream_index != self._media.reference
            and times[start - 1] >= key_time
        ):
            start -= 1  # audio muxed just before the keyframe but playing after it
        self._position = start
        self._pass = 0
        self._skip_end = 0
        self._drop_audio_before = key_time - AUDIO_TOLERANCE
        return key_time

    def close(self) -> None:
        return None

    def __enter__(self) -> CachedReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class UnitCache:
    """Cached files by (path, mtime, size, tracks), least recently used out first."""

    def __init__(self, max_file_bytes: int = MAX_FILE_BYTES, budget_bytes: int = BUDGET_BYTES) -> None:
        self.max_file_bytes = max_file_bytes
        self.budget_bytes = budget_bytes
        self._entries: OrderedDict[tuple, CachedMedia] = OrderedDict()
        self._loading: set[tuple] = set()
        self._lock = threading.Lock()
        self.size = 0

    @staticmethod
    def key(path: Path, info: MediaInfo, indices: frozenset[int]) -> tuple:
        return (str(path), info.mtime_ns, info.size, indices)

    def get(self, path: Path, info: MediaInfo, indices: frozenset[int]) -> CachedMedia | None:
        with self._lock:
            entry = self._entries.get(self.key(path, info, indices))
            if entry is not None:
                self._entries.move_to_end(self.key(path, info, indices))
            return entry

    def wanted(self, path: Path, info: MediaInfo, indices: frozenset[int]) -> bool:
        """Whether loading this file now is worthwhile (small enough, not cached or loading)."""
        key = self.key(path, info, indices)
        with self._lock:
            return info.size <= self.max_file_bytes and key not in self._entries and key not in self._loading

    def load(self, path: Path, info: MediaInfo, indices: frozenset[int]) -> None:
        """Read the file into the cache (blocking: call it from a worker thread)."""
        key = self.key(path, info, indices)
        with self._lock:
            if key in self._entries or key in self._loading:
                return
            self._loading.add(key)
        try:
            media = CachedMedia.load(path, info, indices)
        except MediaError as exc:
            log.info("%s not cached: %s", path, exc)
            return
        finally:
            with self._lock:
                self._loading.discard(key)
        with self._lock:
            self._entries[key] = media
            self.size += media.size
            while self.size > self.budget_bytes and len(self._entries) > 1:
                _, old = self._entries.popitem(last=False)
                self.size -= old.size
