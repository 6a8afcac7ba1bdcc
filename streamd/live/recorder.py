"""Recording a live path to segmented MP4 or Matroska files, remuxed with PyAV (no re-encoding).

The path's access units are tapped on the event loop (``LivePath.unit_listeners``) into a
bounded queue; a worker thread does everything that blocks or costs: decode timestamps for
video that arrived with PTS only (:mod:`media.dts`), cutting at keyframes (:mod:`media.segmenter`),
muxing (:mod:`media.muxer`). If the disk cannot keep up the queue overflows and units are dropped
(counted, logged; video then resumes at a keyframe), never the publisher or its readers.

Files are ``<record_dir>/<path>/<UTC YYYY-MM-DD_HH-MM-SS>.<ext>``, written as ``<name>.part`` and
renamed when finished, so the catalog (which skips ``.part``) never serves half a file. Tracks
share one timeline through each track's wall-clock anchor (sender reports when every track had
one before its first unit, else the arrival of each track's first unit); every file starts at 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from media import h264, h265
from media.access_unit import AccessUnit
from media.dts import DtsGenerator
from media.muxer import MUXABLE, FileMuxer, MuxTrack, opus_head, video_size
from media.segmenter import Placement, Segmenter
from media.track import AacConfig, H264Config, H265Config, Track
from streamd.catalog import PARTIAL_SUFFIX
from streamd.config import ServerConfig
from streamd.live.hub import LivePath, LiveTrack

log = logging.getLogger(__name__)

MAX_QUEUED_UNITS = 4096  # between the event loop and the writer thread
MAX_QUEUED_BYTES = 64 * 1024 * 1024
MAX_PENDING = 1024  # units held in the writer while the video's reorder depth is measured
TAIL_SECONDS = 2.0  # how long a finished file waits for other tracks' units older than its end
JOIN_TIMEOUT = 30.0  # seconds a stopping server waits for files to be finished
EXTENSIONS = {"mp4": "mp4", "mkv": "mkv"}

_PARAMETER_TYPES = {"h264": (h264.NAL_SPS, h264.NAL_PPS), "hevc": (h265.NAL_VPS, h265.NAL_SPS, h265.NAL_PPS)}


@dataclass(frozen=True)
class RecordSettings:
    folder: Path  # <record_dir>/<path>
    container: str  # "mp4" | "mkv"
    segment: float  # seconds per file


def record_settings(config: ServerConfig, path: str) -> RecordSettings | None:
    """How ``path`` is recorded, or None when it is not (``record = false``, or an unsafe name)."""
    settings = config.path_settings(path)
    if not settings.record:
        return None
    parts = PurePosixPath(path).parts
    if not parts or path.startswith("/") or any(p in ("..", ".") or "\\" in p or "\0" in p for p in parts):
        log.warning("%s: not recorded: the path cannot name a folder", path)
        return None
    if settings.record_dir is not None:
        base = Path(settings.record_dir).expanduser()
    else:
        base = config.record_dir if config.record_dir is not None else config.media / "recordings"
    return RecordSettings(
        base.joinpath(*parts),
        settings.record_format or config.record_format,
        settings.record_segment or config.record_segment,
    )


@dataclass
class _Input:
    """One recorded track, as the writer thread sees it."""

    index: int  # the live path's track index
    slot: int  # stream index in the file
    codec: str
    clock: int
    extradata: bytes = b""  # audio: AudioSpecificConfig or OpusHead
    sample_rate: int = 0
    channels: int = 0
    params: dict[int, bytes] = field(default_factory=dict)  # video: parameter sets by NAL type
    size: tuple[int, int] | None = None
    sized_params: tuple[bytes, ...] = ()  # the parameter sets ``size`` was found for
    anchor: tuple[float, int] | None = None  # (wall seconds, track ticks) of one instant
    dts: DtsGenerator[_Pending] | None = None

    @property
    def video(self) -> bool:
        return self.codec in ("h264", "hevc")

    def parameter_sets(self) -> tuple[bytes, ...]:
        return tuple(self.params[t] for t in _PARAMETER_TYPES[self.codec] if t in self.params)

    def complete(self) -> bool:
        return all(t in self.params for t in _PARAMETER_TYPES[self.codec])


@dataclass
class _Queued:
    index: int
    au: AccessUnit
    arrival: float  # wall time it reached the path
    anchor: tuple[float, int] | None  # set on a track's first unit


@dataclass
class _Pending:
    item: _Queued
    pts: int | None = None
    dts: int | None = None  # None while the video DTS generator still holds it


@dataclass
class OutputFile:
    """A file being written. Each track's latest unit is held until the next gives its duration."""

    muxer: FileMuxer
    offsets: list[int]  # per slot: track ticks at the file's 0
    last_dts: list[int | None] = field(default_factory=list)
    held: list[tuple[int, int, bytes, bool] | None] = field(default_factory=list)  # pts, dts, data, key
    durations: list[int] = field(default_factory=list)  # per slot: the last unit's duration
    frames: list[int] = field(default_factory=list)
    end: list[int] = field(default_factory=list)  # per slot: the latest pts + duration
    skip_rasl: bool = False  # began on an open-GOP HEVC CRA: its RASL pictures cannot be decoded

    def __post_init__(self) -> None:
        count = len(self.offsets)
        self.last_dts, self.held = [None] * count, [None] * count
        self.durations, self.frames, self.end = [0] * count, [0] * count, [0] * count


class Recorder:
    """Records one live path (one publisher's session) until stopped."""

    def __init__(
        self,
        live: LivePath,
        settings: RecordSettings,
        *,
        max_units: int = MAX_QUEUED_UNITS,
        max_bytes: int = MAX_QUEUED_BYTES,
    ) -> None:
        self.live = live
        self.settings = settings
        self.max_units, self.max_bytes = max_units, max_bytes
        self.inputs: dict[int, _Input] = {}
        self.left_out: list[str] = []
        self.failed = False
        self.dropped = 0  # units the queue had no room for
        self.skipped = 0  # units before the first keyframe, or while a file could not begin
        self.leading_dropped = 0  # RASL pictures after the CRA a file began on (undecodable there)
        self.bad_timestamps = 0  # units whose DTS did not grow (not muxable)
        self.files: list[Path] = []  # finished files, oldest first
        self._queue: deque[_Queued] = deque()
        self._queued_bytes = 0
        self._cond = threading.Condition()
        self._stopping = False
        self._anchored: set[int] = set()
        self._sender_clock: bool | None = None  # anchors from sender reports (else from arrival)
        self._resync: set[int] = set()  # video tracks that lost units: wait for a keyframe
        self._pending: deque[_Pending] = deque()
        self._file: OutputFile | None = None
        self._previous: OutputFile | None = None  # the file before, open until every track has passed ...
        self._boundary = 0.0  # ... this instant (seconds), where the current file begins
        self._tail: set[int] = set()  # tracks that have not yet passed it
        self._waiting_logged = False
        self._choose_tracks()
        main = next((i for i in self.inputs.values() if i.video), None)
        self._main_video = main.index if main is not None else None
        self._segmenter = Segmenter(settings.segment, main is not None)
        self._thread = threading.Thread(target=self._run, name=f"streamd recorder {live.name}", daemon=True)

    # --- on the event loop ----------------------------------------------------------------

    def start(self) -> bool:
        """Tap the path and start writing; False (logged) when no track can be recorded."""
        if not self.inputs:
            log.error(
                "%s: not recorded: no track can be written to %s", self.live.name, self.settings.container
            )
            return False
        self.live.unit_listeners.add(self.on_unit)
        self._thread.start()
        self._report_start()
        return True

    def _report_start(self) -> None:
        for reason in self.left_out:
            log.warning("%s: recording without %s", self.live.name, reason)
        log.info(
            "%s: recording %s to %s/ (%s, %g s files)",
            self.live.name,
            ", ".join(i.codec for i in self.inputs.values()),
            self.settings.folder,
            self.settings.container,
            self.settings.segment,
        )

    def stop(self) -> None:
        """Stop taking units; the writer finishes the current file and ends."""
        self.live.unit_listeners.discard(self.on_unit)
        with self._cond:
            self._stopping = True
            self._cond.notify()

    def on_unit(self, track: LiveTrack, au: AccessUnit) -> None:
        """One access unit of the path: queued for the writer, never waited for."""
        if self.failed or track.index not in self.inputs:
            return
        index = track.index
        video = self.inputs[index].video
        if index in self._resync:
            if not au.keyframe:
                self.dropped += 1
                return
            self._resync.discard(index)
        anchor = None
        if index not in self._anchored:
            if self._sender_clock is None:  # one clock for all tracks: the sender's only if all have it
                self._sender_clock = all(
                    self.live.tracks[i].sender_ntp is not None for i in self.inputs if i in self.live.tracks
                )
            if self._sender_clock and track.sender_ntp is not None and track.sender_ts is not None:
                anchor = (track.sender_ntp, track.sender_ts)
            else:
                anchor = (time.time(), au.pts)
        with self._cond:
            full = len(self._queue) >= self.max_units or self._queued_bytes + len(au.data) > self.max_bytes
            if not full:
                self._queue.append(_Queued(index, au, time.time(), anchor))
                self._queued_bytes += len(au.data)
                self._cond.notify()
        if full:
            self.dropped += 1
            if video:
                self._resync.add(index)
            if self.dropped == 1 or self.dropped % 500 == 0:
                self._report_behind()
            return
        self._anchored.add(index)

    def _report_behind(self) -> None:
        name, dropped = self.live.name, self.dropped
        log.warning("%s: recording falls behind (disk too slow?): %d units dropped", name, dropped)

    # --- the writer thread ------------------------------------------------------------------

    def join(self, timeout: float | None = None) -> None:
        if self._thread.is_alive():
            self._thread.join(timeout)

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def _run(self) -> None:
        try:
            while (batch := self._take()) is not None:
                for item in batch:
                    self._accept(item)
            self._flush_dts()
            self._drain()
            self._close_file()
        except Exception as exc:  # a full or failing disk, a muxer refusing: stop this recording only
            self.failed = True
            open_files = [f for f in (self._previous, self._file) if f is not None]
            self._report_failure(exc, [f.muxer for f in open_files])
            for file in open_files:
                with contextlib.suppress(Exception):  # already failing: the first error is the one logged
                    file.muxer.close()
            self._previous = self._file = None
        self._report_end()

    def _report_failure(self, exc: Exception, unfinished: list[FileMuxer]) -> None:
        partial = ", ".join(str(m.path) for m in unfinished)
        log.error("%s: recording stopped: %s%s", self.live.name, exc, f" ({partial} left)" if partial else "")

    def _report_end(self) -> None:
        if self.dropped or self.bad_timestamps:
            log.warning(
                "%s: recording: %d units dropped (queue full), %d with timestamps going back",
                self.live.name,
                self.dropped,
                self.bad_timestamps,
            )
        log.info(
            "%s: recording ended: %d file(s) in %s (%d units before the first keyframe not recorded%s)",
            self.live.name,
            len(self.files),
            self.settings.folder,
            self.skipped,
            f", {self.leading_dropped} undecodable RASL pictures after a CRA" if self.leading_dropped else "",
        )

    def _take(self) -> list[_Queued] | None:
        with self._cond:
            while not self._queue and not self._stopping:
                self._cond.wait()
            if not self._queue:
                return None
            batch = list(self._queue)
            self._queue.clear()
            self._queued_bytes = 0
            return batch

    def _accept(self, item: _Queued) -> None:
        recorded = self.inputs[item.index]
        if item.anchor is not None and recorded.anchor is None:
            recorded.anchor = item.anchor
        pending = _Pending(item)
        self._pending.append(pending)
        if recorded.dts is None:
            pending.pts = pending.dts = item.au.pts
        else:
            for pts, dts, done in recorded.dts.push(item.au.pts, pending):
                done.pts, done.dts = pts, dts
        if len(self._pending) > MAX_PENDING:  # video stalled before its depth was measured
            self._flush_dts()
        self._drain()

    def _flush_dts(self) -> None:
        for recorded in self.inputs.values():
            for pts, dts, pending in recorded.dts.flush() if recorded.dts is not None else []:
                pending.pts, pending.dts = pts, dts

    def _drain(self) -> None:
        while self._pending and self._pending[0].dts is not None:
            self._place(self._pending.popleft())

    def _place(self, pending: _Pending) -> None:
        item = pending.item
        recorded = self.inputs[item.index]
        assert pending.pts is not None and pending.dts is not None
        changed = recorded.video and self._update_parameter_sets(recorded, item.au)
        main = item.index == self._main_video
        seconds = self._seconds(recorded, pending.pts)
        where = self._segmenter.place(
            seconds, main, item.au.keyframe, force=changed and self._file is not None
        )
        if where is Placement.START:
            self._retire(seconds, item.index)
            if not self._open_file(pending):
                self._segmenter.reset()
                where = Placement.SKIP
        target = self._file
        if self._previous is not None and item.index in self._tail:
            if seconds < self._boundary:  # sent after the keyframe that began the next file, but older
                target = self._previous
            else:
                self._tail.discard(item.index)
        if self._previous is not None and (not self._tail or seconds - self._boundary > TAIL_SECONDS):
            self._close(self._previous)
            self._previous = None
        if target is None:  # before the first file, or its start failed
            self.skipped += 1
            return
        if main and target.skip_rasl and where is not Placement.START:
            if h265.is_rasl(item.au.nal_units):
                self.leading_dropped += 1
                return
            target.skip_rasl = False
        self._write(target, recorded, pending.pts, pending.dts, item.au)

    def _retire(self, boundary: float, starter: int) -> None:
        """The current file ends at ``boundary``: it stays open for the other tracks' older units."""
        if self._previous is not None:
            self._close(self._previous)
        self._previous, self._file = self._file, None
        self._boundary = boundary
        self._tail = {i for i in self.inputs if i != starter} if self._previous is not None else set()

    def _update_parameter_sets(self, recorded: _Input, au: AccessUnit) -> bool:
        """Take in-band parameter sets; True when they differ from those in use (a new file is due)."""
        types = _PARAMETER_TYPES[recorded.codec]
        nal_type = h264.nal_type if recorded.codec == "h264" else h265.nal_type
        changed = False
        for nal in au.nal_units:
            kind = nal_type(nal)
            if kind in types and recorded.params.get(kind) != nal:
                changed = changed or kind in recorded.params
                recorded.params[kind] = nal
        return changed

    def _seconds(self, recorded: _Input, ticks: int) -> float:
        wall, at = recorded.anchor or (0.0, 0)
        return wall + (ticks - at) / recorded.clock

    def _open_file(self, pending: _Pending) -> bool:
        item = pending.item
        assert pending.pts is not None
        tracks = []
        for recorded in self.inputs.values():
            if recorded.video:
                size = self._video_size(recorded, item.au)
                if size is None:
                    if not self._waiting_logged:
                        log.info("%s: recording waits for a keyframe with parameter sets", self.live.name)
                        self._waiting_logged = True
                    return False
                extradata = h264.to_annexb(recorded.parameter_sets())
                tracks.append(MuxTrack(recorded.codec, recorded.clock, extradata, *size))
            else:
                extradata = recorded.extradata
                if recorded.codec == "opus" and (self.files or self._previous is not None):
                    extradata = extradata[:10] + b"\0\0" + extradata[12:]  # pre-skip: the first file's only
                tracks.append(
                    MuxTrack(
                        recorded.codec,
                        recorded.clock,
                        extradata,
                        sample_rate=recorded.sample_rate,
                        channels=recorded.channels,
                    )
                )
        start = self._seconds(self.inputs[item.index], pending.pts)
        offsets = []
        for recorded in self.inputs.values():
            if recorded.index == item.index:
                offsets.append(pending.pts)
            else:
                wall, at = recorded.anchor or (start, 0)
                offsets.append(at + round((start - wall) * recorded.clock))
        self._file = OutputFile(self._new_muxer(tracks, item.arrival), offsets)
        starter = self.inputs[item.index]
        self._file.skip_rasl = starter.codec == "hevc" and h265.may_lead_rasl(item.au.nal_units)
        return True

    def _new_muxer(self, tracks: list[MuxTrack], wall: float) -> FileMuxer:
        """The next file, named after ``wall`` (when its first unit arrived), as ``.part``."""
        final = self._file_name(wall)
        self.settings.folder.mkdir(parents=True, exist_ok=True)
        return FileMuxer(final.with_name(final.name + PARTIAL_SUFFIX), self.settings.container, tracks)

    def _video_size(self, recorded: _Input, keyframe: AccessUnit) -> tuple[int, int] | None:
        if not recorded.complete():
            return None
        params = recorded.parameter_sets()
        if recorded.size is None or recorded.sized_params != params:
            if recorded.sized_params == params and recorded.size is None:
                return None
            body = [n for n in keyframe.nal_units if n not in params]
            recorded.size = video_size(recorded.codec, h264.to_annexb((*params, *body)))
            recorded.sized_params = params
        return recorded.size

    def _file_name(self, wall: float) -> Path:
        stamp = time.strftime("%Y-%m-%d_%H-%M-%S", time.gmtime(wall))
        extension = EXTENSIONS[self.settings.container]
        name, n = f"{stamp}.{extension}", 0
        while (self.settings.folder / name).exists() or (
            self.settings.folder / (name + PARTIAL_SUFFIX)
        ).exists():
            n += 1
            name = f"{stamp}_{n}.{extension}"
        return self.settings.folder / name

    def _write(self, file: OutputFile, recorded: _Input, pts: int, dts: int, au: AccessUnit) -> None:
        slot = recorded.slot
        pts, dts = pts - file.offsets[slot], dts - file.offsets[slot]
        last = file.last_dts[slot]
        if last is not None and dts <= last:
            self.bad_timestamps += 1
            return
        data = h264.to_annexb(au.nal_units) if recorded.video and au.nal_units else au.data
        held = file.held[slot]
        if held is not None:
            self._mux(file, slot, held, dts - held[1])
        file.held[slot] = (pts, dts, data, au.keyframe or not recorded.video)
        file.last_dts[slot] = dts

    def _mux(self, file: OutputFile, slot: int, unit: tuple[int, int, bytes, bool], duration: int) -> None:
        pts, dts, data, keyframe = unit
        file.muxer.write(slot, pts, dts, data, keyframe, duration)
        file.durations[slot] = duration
        file.frames[slot] += 1
        file.end[slot] = max(file.end[slot], pts + duration)

    def _close_file(self) -> None:
        """Finish the files still open (the end of the recording)."""
        for file in (self._previous, self._file):
            if file is not None:
                self._close(file)
        self._previous = self._file = None

    def _close(self, file: OutputFile) -> None:
        for slot, held in enumerate(file.held):
            if held is not None:  # the last unit: as long as the one before
                self._mux(file, slot, held, file.durations[slot])
        file.held = [None] * len(file.held)
        file.muxer.close()
        self._finished(file)

    def _finished(self, file: OutputFile) -> None:
        """A closed file: renamed from ``.part`` to its final name, and logged."""
        assert file.muxer.path is not None
        final = file.muxer.path.with_name(file.muxer.path.name.removesuffix(PARTIAL_SUFFIX))
        os.replace(file.muxer.path, final)
        self.files.append(final)
        counts = ", ".join(f"{n} {r.codec}" for n, r in zip(file.frames, self.inputs.values(), strict=True))
        seconds = max(
            (end / r.clock for end, r in zip(file.end, self.inputs.values(), strict=True)), default=0.0
        )
        log.info("%s: recorded %s (%.1f s: %s)", self.live.name, final, seconds, counts)

    # --- which tracks -----------------------------------------------------------------------

    def _choose_tracks(self) -> None:
        for track in sorted(self.live.tracks.values(), key=lambda t: t.index):
            announced = track.announced
            codec = announced.track.codec
            what = f"track {track.index} ({announced.payload_format.encoding_name or codec})"
            if not announced.depacketize:
                self.left_out.append(
                    f"{what}: relayed as RTP unchanged (no depacketizer), so it cannot be remuxed"
                )
                continue
            if codec not in MUXABLE:
                self.left_out.append(f"{what}: recording does not support {codec}")
                continue
            recorded = _Input(track.index, len(self.inputs), codec, track.clock_rate)
            if recorded.video:
                if any(i.video for i in self.inputs.values()):
                    self.left_out.append(f"{what}: only the first video track is recorded")
                    continue
                self._video_input(recorded, announced.track)
            elif not self._audio_input(recorded, announced.track):
                self.left_out.append(f"{what}: no AudioSpecificConfig (fmtp config=) to describe it")
                continue
            self.inputs[track.index] = recorded

    def _video_input(self, recorded: _Input, track: Track) -> None:
        recorded.dts = DtsGenerator()
        config = track.config
        sets: tuple[bytes, ...] = ()
        if isinstance(config, H264Config):
            sets = config.sps + config.pps
        elif isinstance(config, H265Config):
            sets = config.vps + config.sps + config.pps
        nal_type = h264.nal_type if recorded.codec == "h264" else h265.nal_type
        for nal in sets:
            recorded.params.setdefault(nal_type(nal), nal)
        if track.width and track.height:
            recorded.size = (track.width, track.height)
            recorded.sized_params = recorded.parameter_sets()

    def _audio_input(self, recorded: _Input, track: Track) -> bool:
        if recorded.codec == "aac":
            config = track.config
            if not isinstance(config, AacConfig):
                return False
            recorded.extradata = config.audio_specific_config
            recorded.sample_rate = config.extension_sample_rate or config.sample_rate
            recorded.channels = config.channels or track.channels or 2
            return True
        # Opus: RTP always says 48000/2 (RFC 7587); a head from the encoder knows better
        recorded.channels = track.channels if track.channels in (1, 2) else 2
        recorded.sample_rate = 48000
        head = track.extradata if track.extradata.startswith(b"OpusHead") else b""
        recorded.extradata = head or opus_head(recorded.channels)
        return True


class Recordings:
    """The server's recorders: one per live path configured with ``record = true``."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self._active: dict[str, Recorder] = {}
        self._finishing: list[Recorder] = []

    def start(self, live: LivePath) -> Recorder | None:
        """Record ``live`` if its settings say so (called when it goes online)."""
        settings = record_settings(self.config, live.name)
        if settings is None:
            return None
        self.stop(live)
        self._finishing = [r for r in self._finishing if r.running]
        recorder = Recorder(live, settings)
        if not recorder.start():
            return None
        self._active[live.name] = recorder
        return recorder

    def is_recording(self, path: str) -> bool:
        recorder = self._active.get(path)
        return recorder is not None and recorder.running

    def stop(self, live: LivePath) -> None:
        """``live`` went offline: its recorder finishes the current file in the background."""
        recorder = self._active.get(live.name)
        if recorder is None or recorder.live is not live:
            return
        del self._active[live.name]
        recorder.stop()
        self._finishing.append(recorder)

    async def close(self, timeout: float = JOIN_TIMEOUT) -> None:
        """Stop every recording and wait (off the loop) until the files are finished."""
        for recorder in self._active.values():
            recorder.stop()
            self._finishing.append(recorder)
        self._active.clear()
        pending, self._finishing = [r for r in self._finishing if r.running], []
        if not pending:
            return
        deadline = time.monotonic() + timeout

        def join_all() -> None:
            for recorder in pending:
                recorder.join(max(0.0, deadline - time.monotonic()))

        await asyncio.to_thread(join_all)
        for recorder in pending:
            if recorder.running:
                log.error(
                    "%s: recording still writing after %g s; its last file may be unfinished",
                    recorder.live.name,
                    timeout,
                )
