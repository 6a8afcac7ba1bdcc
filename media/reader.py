"""Demux selected tracks of a file into access units, with seeking and seamless looping.

PyAV hands out packets in container order with whatever timestamps the container has. The reader
turns them into AccessUnits the RTP layer can packetize without knowing the container:

* timestamps are always present, integer ticks of the track's time_base: a missing video DTS is
  back-filled from the next packet that has one (Matroska with B-frames), a missing PTS copies
  the DTS, and raw streams without either get DTS = previous DTS + frame duration;
* H.264 and H.265 become a tuple of NAL units plus their Annex B form; AAC loses its ADTS headers;
* after a seek nothing before the video keyframe is returned, and audio starts with it;
* in loop mode the file restarts at its end with timestamps shifted by the loop period, so a
  client sees one endless stream with increasing timestamps;
* tracks come out merged by DTS, whatever the file's interleaving (fragmented MP4 with a second
  of video then a second of audio, long per-track runs): see :mod:`media.interleave`.

Nothing is decoded, so reading costs a little Python per packet.
"""

from __future__ import annotations

import logging
import os
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import av

from media import aac, h264
from media.access_unit import AccessUnit
from media.errors import MediaError
from media.interleave import DtsMerger
from media.probe import open_container
from media.track import AacConfig, H264Config, H265Config, MediaInfo, Track

log = logging.getLogger(__name__)

# A seek that lands on a keyframe after the target is retried this much further back (seconds).
_SEEK_BACKOFF = (0, 1, 5, 30)
# Video packets that may wait for a DTS to be back-filled before we stop waiting and guess.
_MAX_DTS_WAIT = 32
# Raw elementary streams: no index and no timestamps, so seeking means reading from the start.
_SCAN_FORMATS = frozenset({"h264", "hevc", "m4v", "mpegvideo", "rawvideo"})


@dataclass(slots=True)
class _Slot:
    """An AU in the output queue, in file time; ``dts`` stays None until it can be back-filled."""

    track: int
    pts: int
    dts: int | None
    keyframe: bool
    data: bytes
    nal_units: tuple[bytes, ...]
    duration: int


@dataclass(slots=True)
class _TrackState:
    track: Track
    default_duration: int  # ticks of one frame when the container gives none
    last_dts: int | None = None
    last_duration: int = 0
    waiting: list[_Slot] = field(default_factory=list)  # video slots awaiting a DTS, oldest first
    last_out_dts: int | None = None  # after the loop offset: keeps output DTS monotonic
    keyframe_seen: bool = True  # False from a seek until this (video) track's first keyframe


class MediaReader:
    """Read access units of the tracks ``stream_indices`` of ``path`` (probed as ``info``).

    Blocking file I/O: call it from one thread at a time (e.g. an executor), never concurrently.
    Errors (unreadable, truncated or corrupt data) surface as MediaError; after one, ``read``
    returns None until the next ``seek``.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        info: MediaInfo,
        stream_indices: Iterable[int],
        *,
        loop: bool = False,
    ) -> None:
        self._path = str(path)
        self._info = info
        self._loop = loop
        indices = sorted(set(stream_indices))
        if not indices:
            raise MediaError(f"{self._path}: no track selected")
        self._tracks: dict[int, Track] = {}
        for index in indices:
            try:
                self._tracks[index] = info.track(index)
            except KeyError:
                raise MediaError(f"{self._path}: no track with index {index}") from None
        self._state = {i: _TrackState(t, _default_duration(t)) for i, t in self._tracks.items()}
        videos = [i for i, t in self._tracks.items() if t.kind == "video"]
        self._ref = videos[0] if videos else indices[0]  # the track seeks align to
        starts = [t.start_time for t in self._tracks.values() if t.start_time is not None]
        self._file_start = min(starts) if starts else Fraction(0)
        self._container: Any = None
        self._packets: Iterator[Any] = iter(())
        self._queue: deque[_Slot] = deque()  # demuxed, in container order
        self._out: deque[AccessUnit] = deque()  # finished AUs: pushed back, or read ahead by seek
        self._merger = DtsMerger({i: t.time_base for i, t in self._tracks.items()})
        self._late_logged = False
        self._emitted: dict[int, AccessUnit] = {}  # per track, the last AU the merger handed out
        self._side: dict[int, MediaReader] = {}  # tracks read by a demuxer of their own (long runs)
        self._side_floor: dict[int, int] = {}  # their DTS already handed out by the main demuxer
        self._eof = False
        self._closed = False
        self._seeking = False  # no looping while a seek reads ahead
        self._synthesized = False  # timestamps were invented since the last (re)positioning
        self._seek_start: Fraction | None = None  # after a seek: drop audio ending before this
        self._loop_count = 0
        self._offset = Fraction(0)  # seconds added to every timestamp of the current pass
        self._pass_units = 0  # AUs returned in the current pass; none means stop looping
        self._pass_end: Fraction | None = None  # latest pts + duration seen, in file seconds
        self._open()

    # -- public API -------------------------------------------------------------------------

    def read(self) -> AccessUnit | None:
        """The next access unit in decode order, or None at the end (never, in loop mode)."""
        if self._out:
            return self._out.popleft()
        return self._next()

    def read_batch(self, until_seconds: Fraction, max_units: int) -> list[AccessUnit]:
        """AUs whose DTS in seconds is <= ``until_seconds``, at most ``max_units`` of them."""
        batch: list[AccessUnit] = []
        while len(batch) < max_units:
            au = self.read()
            if au is None:
                break
            if au.dts * self._tracks[au.stream_index].time_base > until_seconds:
                self._out.appendleft(au)
                break
            batch.append(au)
        return batch

    def seek(self, seconds: Fraction) -> Fraction:
        """Restart at the keyframe at or before ``seconds`` and return that keyframe's PTS.

        Both are file timestamps in seconds (the probed ``start_time`` is where the file begins).
        The reference track is the first selected video track, else the first selected track. A
        seek also restarts the loop count: timestamps continue from the file's own again.
        AUs between the keyframe and ``seconds`` are returned too (a decoder needs them).
        """
        if self._closed:
            raise MediaError(f"{self._path}: reader is closed")
        target = Fraction(seconds)
        if self._info.duration is not None:
            target = min(target, self._file_start + self._info.duration)
        self._seeking = True
        try:
            if self._info.format_name not in _SCAN_FORMATS:
                for back in _SEEK_BACKOFF:
                    point = target - back
                    # At (or before) the start, reading from the top beats trusting the demuxer:
                    # MPEG-PS seeks to its first timestamp can land after the first keyframe.
                    if point <= self._file_start or not self._container_seek(point):
                        break
                    start = self._scan_forward(target, accept_later=point <= self._file_start)
                    if self._synthesized:
                        break  # timestamps invented after a seek into a raw stream mean nothing
                    if start is not None:
                        return start
            # No usable index: read from the beginning.
            self._prepare_seek()
            self._open()
            start = self._scan_forward(target, accept_later=True)
            if start is None:  # no keyframe anywhere: play from the beginning as is
                self._prepare_seek()
                self._open()
                for st in self._state.values():
                    st.keyframe_seen = True
                return self._file_start
            return start
        finally:
            self._seeking = False

    def close(self) -> None:
        """Release the file. Further reads return None."""
        self._closed = True
        self._eof = True
        self._queue.clear()
        self._out.clear()
        self._merger.clear()
        self._close_sides()
        if self._container is not None:
            self._container.close()
            self._container = None

    def __enter__(self) -> MediaReader:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- positioning ------------------------------------------------------------------------

    def _open(self) -> None:
        """(Re)open the file at its beginning: a new pass."""
        if self._container is not None:
            self._container.close()
        self._container = open_container(self._path)
        self._packets = self._container.demux([self._container.streams[i] for i in self._tracks])
        self._new_pass()

    def _new_pass(self) -> None:
        self._queue.clear()
        self._eof = False
        self._synthesized = False
        self._pass_units = 0
        for st in self._state.values():
            st.last_dts = None
            st.last_duration = 0
            st.waiting.clear()

    def _prepare_seek(self) -> None:
        self._out.clear()
        self._merger.clear()
        self._close_sides()
        self._loop_count = 0
        self._offset = Fraction(0)
        self._seek_start = None
        self._pass_end = None
        for st in self._state.values():
            st.last_out_dts = None
            st.keyframe_seen = st.track.kind != "video"

    def _container_seek(self, seconds: Fraction) -> bool:
        """Let the demuxer seek to the keyframe before ``seconds``; False if it cannot."""
        self._prepare_seek()
        ticks = int(seconds / self._tracks[self._ref].time_base)
        try:
            self._container.seek(ticks, stream=self._container.streams[self._ref], backward=True)
        except (av.FFmpegError, OSError):
            return False
        self._packets = self._container.demux([self._container.streams[i] for i in self._tracks])
        self._new_pass()
        return True

    def _scan_forward(self, target: Fraction, accept_later: bool) -> Fraction | None:
        """From the current position, find the last reference keyframe with PTS <= ``target``.

        Reading stops at the first reference AU whose DTS is past ``target`` (no later keyframe
        can qualify). The AUs from the keyframe on are queued for ``read``; audio that ends
        before it is dropped. Returns the keyframe's PTS in seconds, or None if the first one is
        already past ``target`` (unless ``accept_later``: at the file start nothing earlier exists).
        """
        ref_tb = self._tracks[self._ref].time_base
        kept: list[AccessUnit] = []
        start: Fraction | None = None
        while (au := self._next()) is not None:
            if au.stream_index == self._ref and au.keyframe:
                pts = au.pts * ref_tb
                if pts > target and (start is not None or not accept_later):
                    if start is None:
                        return None
                    kept.append(au)
                    break
                # A later keyframe qualifies: restart from it. Other video tracks restart at
                # their own next keyframe; audio still sounding at ``pts`` is kept.
                start = pts
                kept = [
                    k
                    for k in kept
                    if self._tracks[k.stream_index].kind != "video"
                    and not self._ends_before(k.stream_index, k.pts, k.duration, pts)
                ]
                for st in self._state.values():
                    if st.track.kind == "video" and st.track.index != self._ref:
                        st.keyframe_seen = False
                kept.append(au)
                if pts > target:
                    break
                continue
            kept.append(au)
            if au.stream_index == self._ref and start is not None and au.dts * ref_tb > target:
                break
        if start is None:
            return None
        self._seek_start = self._audio_cut(start)
        cut = self._seek_start
        self._out.extend(k for k in kept if not self._ends_before(k.stream_index, k.pts, k.duration, cut))
        return start

    def _audio_cut(self, start: Fraction | None) -> Fraction | None:
        """Where audio must begin after a seek; None at the file start, to keep priming frames."""
        return None if start is None or start <= self._file_start else start

    def _ends_before(self, index: int, pts: int, duration: int, start: Fraction | None) -> bool:
        """A non-video AU that is over before ``start`` (None: no start, nothing is)."""
        track = self._tracks[index]
        if start is None or track.kind == "video":
            return False
        tb = track.time_base
        return (pts + duration) * tb <= start if duration else pts * tb < start

    def _start_next_loop(self) -> bool:
        """Reopen the file for another pass, shifted by the loop period; False if pointless."""
        end = self._pass_end if self._pass_end is not None else self._info.duration
        period = (end or Fraction(0)) - self._file_start
        if period <= 0 or self._pass_units == 0:
            return False
        self._offset += period
        self._loop_count += 1
        self._seek_start = None
        self._pass_end = None
        self._open()
        for st in self._state.values():
            st.keyframe_seen = True
        return True

    # -- the pipeline: packets -> slots -> access units --------------------------------------

    def _next(self) -> AccessUnit | None:
        """The next AU in DTS order across tracks, reading ahead as far as the merger allows."""
        merger = self._merger
        while True:
            try:
                self._fill()
            except MediaError:
                merger.clear()
                raise
            au = merger.pop()
            if au is None:
                break
            self._emitted[au.stream_index] = au
            # read ahead before a seek knew where audio must start: apply that cut now
            if not self._ends_before(au.stream_index, au.pts, au.duration, self._seek_start):
                break
        if merger.late_units and not self._late_logged:
            self._late_logged = True
            log.warning(
                "%s: tracks interleaved beyond the read-ahead bound; some units are sent up to %.2f s late",
                self._path,
                merger.worst_lateness,
            )
        return au

    def _fill(self) -> None:
        """Read until every track that may still have units has one waiting, or the bound is hit."""
        merger = self._merger
        while starved := merger.starved():
            split = [i for i in starved if i in self._side] if self._side else None
            if split:
                for index in split:
                    au = self._side[index].read()
                    while au is not None and au.dts <= self._side_floor[index]:
                        au = self._side[index].read()
                    if au is None:
                        merger.finish(index)
                    else:
                        merger.push(au)
                continue
            if merger.full and not self._split(starved):
                return
            au = self._next_in_file_order()
            if au is None:
                return
            if au.stream_index not in self._side:  # a split track's units come from its own demuxer
                merger.push(au)

    def _split(self, starved: list[int]) -> bool:
        """Read ``starved`` tracks with demuxers of their own, from where they are: their runs in
        the file are longer than the read-ahead bound. False if that cannot help (or is not done:
        looping, seeking, the file read to its end, a track that is over)."""
        if self._loop or self._seeking or self._eof:
            return False
        opened = False
        for index in starved:
            if index in self._side or self._track_over(index):
                continue
            side = MediaReader(self._path, self._info, [index])
            last = self._emitted.get(index)
            track = self._tracks[index]
            if last is not None:
                side.seek(last.dts * track.time_base)
            elif self._seek_start is not None:
                side.seek(self._seek_start)
            self._side[index] = side
            self._side_floor[index] = last.dts if last is not None else -(1 << 62)
            log.info(
                "%s: track %d comes in runs longer than %s s of media; reading it with a demuxer of its own",
                self._path,
                index,
                self._merger.max_seconds,
            )
            opened = True
        return opened

    def _track_over(self, index: int) -> bool:
        """Whether track ``index`` has ended by its probed duration (no use looking for more)."""
        track, last = self._tracks[index], self._emitted.get(index)
        if track.duration is None or last is None:
            return False
        end = (track.start_time or Fraction(0)) + track.duration
        return (last.pts + last.duration) * track.time_base >= end - Fraction(1, 2)

    def _close_sides(self) -> None:
        for side in self._side.values():
            side.close()
        self._side.clear()
        self._side_floor.clear()
        self._emitted.clear()

    def _next_in_file_order(self) -> AccessUnit | None:
        """The next AU after timestamp repair, seek filtering and the loop offset."""
        while True:
            slot = self._next_slot()
            if slot is None:
                if self._loop and not self._seeking and not self._closed and self._start_next_loop():
                    continue
                return None
            st = self._state[slot.track]
            tb = st.track.time_base
            end = (slot.pts + slot.duration) * tb
            if self._pass_end is None or end > self._pass_end:
                self._pass_end = end
            if self._loop_count and slot.pts < 0:
                continue  # priming frames only make sense at the very start
            if not st.keyframe_seen:
                if not slot.keyframe:
                    continue
                st.keyframe_seen = True
            if self._ends_before(slot.track, slot.pts, slot.duration, self._seek_start):
                continue
            self._pass_units += 1
            shift = round(self._offset / tb)
            dts = slot.dts + shift if slot.dts is not None else slot.pts + shift
            if st.last_out_dts is not None and dts < st.last_out_dts:
                dts = st.last_out_dts
            st.last_out_dts = dts
            return AccessUnit(
                stream_index=slot.track,
                pts=slot.pts + shift,
                dts=dts,
                keyframe=slot.keyframe,
                data=slot.data,
                nal_units=slot.nal_units,
                duration=slot.duration,
            )

    def _next_slot(self) -> _Slot | None:
        """The oldest queued slot once its DTS is known, demuxing more packets as needed."""
        while True:
            if self._queue and self._queue[0].dts is not None:
                return self._queue.popleft()
            if self._eof:
                if not self._queue:
                    return None
                self._guess_waiting(self._state[self._queue[0].track])
                continue
            self._demux_one()

    def _demux_one(self) -> None:
        try:
            packet = next(self._packets)
        except StopIteration:
            self._eof = True
            return
        except (av.FFmpegError, OSError) as exc:
            self._eof = True
            raise MediaError(f"{self._path}: read error ({exc})") from exc
        if packet.size == 0:
            return
        try:
            self._enqueue(packet)
        except MediaError as exc:
            self._eof = True
            self._loop = False
            pos = packet.pos
            where = f" at byte {pos}" if pos is not None and pos >= 0 else ""
            raise MediaError(f"{self._path}: corrupt or truncated packet{where}: {exc}") from exc

    def _enqueue(self, packet: Any) -> None:
        st = self._state[packet.stream.index]
        track = st.track
        duration = packet.duration or 0
        pts, dts = packet.pts, packet.dts
        if pts is None and dts is None:
            dts = 0 if st.last_dts is None else st.last_dts + (st.last_duration or st.default_duration)
            self._synthesized = True
        if pts is None:
            pts = dts
        if dts is None and track.kind != "video":
            dts = pts  # no reordering outside video
        for payload, nals, offset, frame_duration in _payloads(track, bytes(packet), duration):
            slot = _Slot(
                track=track.index,
                pts=pts + offset,
                dts=None if dts is None else dts + offset,
                keyframe=bool(packet.is_keyframe),
                data=payload,
                nal_units=nals,
                duration=frame_duration,
            )
            self._queue.append(slot)
            if slot.dts is None:
                st.waiting.append(slot)
                if len(st.waiting) > _MAX_DTS_WAIT:
                    self._guess_waiting(st)
            else:
                self._backfill(st, slot.dts)
                st.last_dts = slot.dts
                st.last_duration = slot.duration or st.default_duration

    @staticmethod
    def _backfill(st: _TrackState, next_dts: int) -> None:
        """Waiting slots get DTS one frame apart, counting back from ``next_dts``."""
        dts = next_dts
        for slot in reversed(st.waiting):
            dts -= slot.duration or st.default_duration
            slot.dts = dts
        st.waiting.clear()

    @staticmethod
    def _guess_waiting(st: _TrackState) -> None:
        """No DTS is coming (end of file, or too long a wait): count on from the last known one."""
        for slot in st.waiting:
            if st.last_dts is None:
                slot.dts = slot.pts
            else:
                slot.dts = min(slot.pts, st.last_dts + (st.last_duration or st.default_duration))
            st.last_dts = slot.dts
            st.last_duration = slot.duration or st.default_duration
        st.waiting.clear()


def _payloads(track: Track, data: bytes, duration: int) -> list[tuple[bytes, tuple[bytes, ...], int, int]]:
    """Normalise one packet: (payload, NAL units, timestamp offset, duration) per access unit."""
    config = track.config
    if track.codec in ("h264", "hevc"):
        if isinstance(config, H264Config | H265Config) and config.nal_length_size:
            nals = tuple(h264.split_length_prefixed(data, config.nal_length_size))
        else:
            nals = tuple(h264.split_annexb(data))
        return [(h264.to_annexb(nals), nals, 0, duration)]
    if track.codec == "aac" and (
        (isinstance(config, AacConfig) and config.adts_input) or aac.looks_like_adts(data)
    ):
        frames = aac.split_adts(data)
        if len(frames) == 1:
            return [(frames[0][1], (), 0, duration)]
        out = []
        samples = 0
        for header, raw in frames:
            begin = round(Fraction(samples, header.sample_rate) / track.time_base)
            samples += 1024 * header.raw_blocks
            end = round(Fraction(samples, header.sample_rate) / track.time_base)
            out.append((raw, (), begin, end - begin))
        return out
    return [(data, (), 0, duration)]


def _default_duration(track: Track) -> int:
    """Ticks of one frame, for raw streams whose packets carry no duration."""
    if track.kind == "video" and track.frame_rate:
        return max(1, round(1 / (track.frame_rate * track.time_base)))
    if track.kind == "audio" and track.sample_rate:
        return max(1, round(Fraction(1024, track.sample_rate) / track.time_base))
    return 1
