"""One session's playback: the I/O around the sans-I/O pacing core (``streamd.rtp.pacing``).

The core decides what is due when; this adapter gives it the loop's clock, reads access units
for it (PyAV, blocking) in the playback thread pool a second or two ahead of the wall clock (a
cached file is read on the loop: it is only a list walk), hands its packets to the sinks, waits
for congested TCP connections, and is pumped by the loop's one ``Pacer`` with every other
session, so a wake-up serves them all. Every track of the session shares one wall clock, which
is also the NTP clock of the sender reports: players can line audio up with video from them.

Playback reads (and reader open/seek/close) run on their own bounded thread pool, never behind
HTTP remuxes or probes on the loop's default executor.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from media.access_unit import AccessUnit
from media.reader import MediaReader
from media.transcode import TranscodingReader
from media.ts_source import TransportStreamReader
from media.unit_cache import CachedReader, UnitCache
from streamd.pacer import Pacer, loop_pacer
from streamd.rtp.outgoing import OutgoingStream, PayloadMemo
from streamd.rtp.pacing import Pacing, PacingSettings, Pumped
from streamd.rtp.presentation import Presentation, StreamableTrack
from streamd.rtp.timeline import Timeline
from streamd.transport.sink import PacketSink

log = logging.getLogger(__name__)

READ_CHUNK = Fraction(2)  # wall seconds of media one read fetches


def wall_offset() -> float:
    """Unix time minus the event loop's clock, read precisely.

    The loop's clock is CLOCK_MONOTONIC (uvloop's in whole milliseconds, never ahead), so an
    offset taken from ``time.monotonic()`` never puts a sender report's NTP time ahead of its
    sending; one taken from the loop's rounded clock could, by up to a millisecond, and a
    receiver's LSR/DLSR arithmetic then gives a round trip below zero (RFC 3550 6.4.1).
    """
    return time.time() - time.monotonic()


_READ_CHUNK = float(READ_CHUNK)
_CACHED_READ_CHUNK = 1.2  # from memory: about 0.2 s of media beyond the lookahead per read
MAX_QUEUED_UNITS = 5000  # bounds memory whatever the file's packet rate

# Playback's own threads: reads, seeks, opens and closes of session readers (bounded; a read is
# short, so a few per core keep every session fed), and loading files into the shared cache
# (long, so apart: they never hold up a session's next read).
READ_WORKERS = min(32, 4 * (os.cpu_count() or 2))
_reads = ThreadPoolExecutor(max_workers=READ_WORKERS, thread_name_prefix="playback-read")
_cache_loads = ThreadPoolExecutor(max_workers=2, thread_name_prefix="playback-cache")


def clock_tick(loop: asyncio.AbstractEventLoop) -> float:
    """The granularity of ``loop.time()``: uvloop's clock and timers count whole milliseconds, so
    a pacer slack below that (a ``send_slack`` of 0) would see a timer fire before the clock
    reaches its due time and spin on empty wake-ups until the millisecond ticks. Precise pacing
    does not use it: its pacer sleeps the rest on a finer clock (``streamd.pacer``)."""
    return 0.001 if type(loop).__module__.startswith("uvloop") else 0.0


@dataclass
class Binding:
    """One set-up track: what it is, its sender state, and where its packets go."""

    streamable: StreamableTrack
    stream: OutgoingStream
    sink: PacketSink

    @property
    def index(self) -> int:
        return self.streamable.track.index

    @property
    def is_video(self) -> bool:
        return self.streamable.track.kind == "video"


@dataclass(frozen=True)
class PlayRequest:
    """What a PLAY asks for. ``start``/``end`` are npt seconds; None start resumes (or begins)."""

    start: Fraction | None = None
    end: Fraction | None = None
    scale: Fraction = Fraction(1)
    speed: Fraction = Fraction(1)


@dataclass(frozen=True)
class StartInfo:
    """What a PLAY response reports: the actual start and, per track, the first seq and rtptime."""

    start: Fraction
    end: Fraction | None
    rtp_info: dict[int, tuple[int, int]]  # track index -> (seq, rtptime)


class Playback:
    """Sends one session's tracks. Created at the first PLAY, kept across PAUSE/PLAY."""

    def __init__(
        self,
        file: Path,
        presentation: Presentation,
        bindings: dict[int, Binding],
        *,
        label: str,
        on_end: Callable[[str], None] | None = None,
        unit_cache: UnitCache | None = None,
        pacer: Pacer | None = None,
        settings: PacingSettings | None = None,
    ) -> None:
        self.file = file
        self.unit_cache = unit_cache
        self.presentation = presentation
        self.bindings = bindings
        self.label = label
        self.on_end = on_end
        self.finished = False
        self.settings = settings or PacingSettings()
        self._pacer = pacer
        time_bases = {t.index: t.time_base for t in presentation.info.tracks}
        self._core = Pacing(bindings, time_bases, self.settings)
        self._timeline: Timeline | None = None
        self._reader: MediaReader | TransportStreamReader | TranscodingReader | CachedReader | None = None
        self._drain_task: asyncio.Task[None] | None = None
        self._bye_sent = False
        self._pending_read: asyncio.Future[tuple[list[AccessUnit], bool]] | None = None
        self._read_upto: dict[int, int] = {}  # per track, the DTS of the last AU read
        self._unit_at_a_time = False  # a sink with flow control: check it after every AU

    @property
    def position(self) -> Fraction:
        """File time (seconds) where a resume continues."""
        return self._core.position

    @property
    def scale(self) -> Fraction:
        return self._core.scale

    @property
    def speed(self) -> Fraction:
        return self._core.speed

    # --- control -------------------------------------------------------------------------

    async def prepare(self, request: PlayRequest) -> StartInfo:
        """Position for a PLAY (seek, or resume where paused) and report the RTP-Info."""
        loop = asyncio.get_running_loop()
        core = self._core
        await self._settle()
        origin = self.presentation.origin
        left_at = core.position
        start = request.start
        if self._reader is None and start is None:
            start = Fraction(0)
        if start == 0:
            # from the very beginning: a fresh reader, not a seek, so nothing before the first
            # keyframe (AAC priming frames) is skipped
            if self._reader is not None:
                await loop.run_in_executor(_reads, self._reader.close)
            self._reader = await loop.run_in_executor(_reads, self._open_reader)
            self._warm_cache()
            self._read_upto = {}
            core.seek(origin)
        elif start is not None:
            if self._reader is None:
                self._reader = await loop.run_in_executor(_reads, self._open_reader)
            actual = await loop.run_in_executor(_reads, self._reader.seek, start + origin)
            self._read_upto = {}
            core.seek(actual)
        self._set_read_chunk()
        self.finished = False
        self._bye_sent = False
        core.prepare(None if request.end is None else request.end + origin, request.scale, request.speed)
        position = core.position
        if self._timeline is None:
            self._timeline = Timeline(position, position, core.scale)
        else:
            self._timeline = self._timeline.next_segment(left_at, position, core.scale)
        for binding in self.bindings.values():
            binding.stream.timeline = self._timeline
        await self._fill_until_every_track_queued()
        # RTP-Info rtptime: the RTP timestamp of the Range start on every track (RFC 2326 12.33),
        # also where AAC priming frames (stamped earlier) go out before it
        rtp_info = {
            index: (binding.stream.next_seq, binding.stream.timestamp_at(position))
            for index, binding in self.bindings.items()
        }
        end = None if core.end is None else core.end - origin
        return StartInfo(max(Fraction(0), position - origin), end, rtp_info)

    def start(self) -> None:
        """Begin sending now, from ``position``."""
        loop = asyncio.get_running_loop()
        if self._pacer is None:
            precise = self.settings.precise  # to the sub-millisecond: slack 0 on the fine clock
            slack = 0.0 if precise else max(self.settings.pacer_slack, clock_tick(loop))
            self._pacer = loop_pacer(slack, fine=precise)
        now = loop.time()
        self._unit_at_a_time = any(
            isinstance(getattr(type(b.sink), "writable", None), property) for b in self.bindings.values()
        )
        self._core.begin(now, wall_offset())
        self._pacer.schedule(self, now)

    async def pause(self) -> Fraction:
        """Stop sending; the next ``prepare`` + ``start`` resumes here. Returns npt."""
        if self._core.active:
            self._core.halt(self._now())
            self._deactivate()
            out = Pumped()
            self._core.release_held(float("inf"), out)  # already numbered: send now, not a gap
            self._send(out)
        return self.npt

    @property
    def npt(self) -> Fraction:
        """Where playback stands, in normal play time (seconds from the presentation start)."""
        position = self._core.media_now(self._now()) if self.running else self._core.position
        return max(Fraction(0), position - self.presentation.origin)

    async def stop(self, *, send_bye: bool = True) -> None:
        """End playback for good: BYE on every track, reader closed."""
        was_running = self._core.active
        if was_running:
            self._core.halt(self._now())
        self._deactivate()
        await self._settle()
        if send_bye and (was_running or self.finished) and not self._bye_sent:
            self._send_bye()
        if self._reader is not None:
            reader, self._reader = self._reader, None
            await asyncio.get_running_loop().run_in_executor(_reads, reader.close)

    def remove_track(self, index: int) -> None:
        """Per-track TEARDOWN: BYE for that track, then stop sending it."""
        if index not in self.bindings:
            return
        self._sync_wall_clock()
        goodbyes = self._core.goodbyes(self._now(), [index])
        binding = self.bindings.pop(index)
        for _, packet in goodbyes:
            binding.sink.send_rtcp(packet)

    @property
    def running(self) -> bool:
        return self._core.active

    def _deactivate(self) -> None:
        self._core.active = False
        if self._pacer is not None:
            self._pacer.cancel(self)
        task, self._drain_task = self._drain_task, None
        if task is not None:
            task.cancel()

    def _wake(self) -> None:
        """Something we waited for (a read, a congested connection) is done: pump us now."""
        if self._core.active and self._pacer is not None:
            self._pacer.schedule(self, self._now())

    @staticmethod
    def _now() -> float:
        return asyncio.get_running_loop().time()

    def _sync_wall_clock(self) -> None:
        """Before the first start, reports still need the loop clock's Unix time."""
        if self._core.wall_to_unix is None:
            self._core.wall_to_unix = wall_offset()

    # --- pacing: called by the loop's Pacer ------------------------------------------------

    def pump(self, now: float, horizon: float) -> float | None:
        """Send what is due up to ``horizon``; return when we are due next (None: until woken)."""
        if not self._core.active:
            return None
        try:
            return self._pump(now, horizon)
        except Exception as exc:  # a broken file ends this session, never the server
            self._finish(f"read error: {exc}", error=True)
            return None

    def _pump(self, now: float, horizon: float) -> float | None:
        core = self._core
        if self._unit_at_a_time:  # flow control: one AU at a time while the sink takes more
            while True:
                out = core.pump(now, horizon, max_units=1)
                self._send(out)
                if out.finished is not None:
                    break
                blocked = next(
                    (b for i, _ in out.rtp if not getattr((b := self.bindings[i]).sink, "writable", True)),
                    None,
                )
                if blocked is not None:  # TCP above its high-water mark: wait until it drains
                    self._wait_writable(blocked)
                    return None
                if not out.more:
                    break
        else:
            out = core.pump(now, horizon)
            self._send(out)
        if out.finished is not None:
            self._finish(out.finished)
            return None
        if out.read_until is not None and self._reader is not None:
            self._start_read(out.read_until)
            if not core.reading:  # read on the loop (cached), already queued: may be due sooner
                return core.next_due(now)
        return out.next_due

    def _send(self, out: Pumped) -> None:
        bindings = self.bindings
        for index, packets in out.rtp:
            sink = bindings[index].sink
            send_many = getattr(sink, "send_rtp_many", None)  # optional for other sinks
            if send_many is not None:
                send_many(packets)
            else:
                for packet in packets:
                    sink.send_rtp(packet)
        if out.rtcp:
            for index, packet in out.rtcp:
                bindings[index].sink.send_rtcp(packet)

    def _wait_writable(self, binding: Binding) -> None:
        async def wait() -> None:
            await binding.sink.drain()
            self._drain_task = None
            self._wake()

        self._drain_task = asyncio.get_running_loop().create_task(wait(), name=f"drain {self.label}")

    def _finish(self, reason: str, *, error: bool = False) -> None:
        """The end of the file (or of the requested range, or a read error): BYE, then tell."""
        if error:
            log.warning("%s: %s", self.label, reason)
        self._core.finish(self._now())
        self._deactivate()
        self.finished = True
        self._send_bye()
        if self.on_end is not None:
            self.on_end(reason if self._core.end is None else "end of the requested range")

    def _send_bye(self) -> None:
        self._bye_sent = True
        self._sync_wall_clock()
        for index, packet in self._core.goodbyes(self._now()):
            sink = self.bindings[index].sink
            if not sink.closed:
                sink.send_rtcp(packet)

    # --- reading ---------------------------------------------------------------------------

    def _set_read_chunk(self) -> None:
        """A cached read runs on the loop: small and often, so that sessions started together
        do not all read a big chunk in the same wake-up and make everyone else's packets late."""
        self._core.read_chunk = _CACHED_READ_CHUNK if isinstance(self._reader, CachedReader) else _READ_CHUNK

    def _start_read(self, until: float) -> asyncio.Future[tuple[list[AccessUnit], bool]] | None:
        """Read up to ``until`` media seconds: at once for a cached file, else in a playback thread
        (returns its future). The queue is bounded by ``MAX_QUEUED_UNITS``."""
        room = MAX_QUEUED_UNITS - len(self._core.queue)
        if self._reader is None or room <= 0:
            return None
        if not isinstance(self._reader, CachedReader) and self._cacheable:
            self._move_to_cache()
        if isinstance(self._reader, CachedReader):
            self._take(*self._read_until(until, room))
            return None
        future = asyncio.get_running_loop().run_in_executor(_reads, self._read_until, until, room)
        future.add_done_callback(self._absorb)
        self._pending_read = future
        self._core.reading = True
        return future

    async def _fill(self, until: float) -> None:
        """Read ahead and wait for it (before a PLAY's response: RTP-Info needs the first AUs).

        A threaded read is shielded: if the PLAY is abandoned mid-read, the thread's AUs still
        land in the queue, so a later PLAY continues without a gap. Seeks wait via ``_settle``.
        """
        await self._settle()
        future = self._start_read(until)
        if future is not None:
            await asyncio.shield(future)

    def _absorb(self, future: asyncio.Future[tuple[list[AccessUnit], bool]]) -> None:
        if future is self._pending_read:
            self._pending_read = None
            self._core.reading = False
        if future.cancelled():
            return
        exc = future.exception()
        if exc is not None:
            if self._core.active:  # while playing, a broken file ends the session (else PLAY reports it)
                self._finish(f"read error: {exc}", error=True)
            return
        self._take(*future.result())
        self._wake()

    def _move_to_cache(self) -> None:
        """A session that began before its file was cached reads from the cache once it is in:
        demuxing per session in worker threads costs CPU and holds the GIL against the pacer."""
        assert self.unit_cache is not None and self._reader is not None
        if self.presentation.loop or self._core.eof:
            return
        cached = self.unit_cache.get(self.file, self.presentation.info, self._cache_indices)
        if cached is None:
            return
        reader = CachedReader(cached, list(self.bindings), loop=False)
        if not reader.resume_after(self._read_upto):
            return
        old, self._reader = self._reader, reader
        self._set_read_chunk()
        memo = cached.sender_memo.setdefault("payloads", PayloadMemo(cached.unit_ids))
        for binding in self.bindings.values():
            binding.stream.payload_memo = memo
        future = asyncio.get_running_loop().run_in_executor(_reads, old.close)
        future.add_done_callback(_log_failure)

    def _take(self, units: list[AccessUnit], eof: bool) -> None:
        upto = self._read_upto
        for au in units:
            upto[au.stream_index] = au.dts
        self._core.take(units, eof)

    async def _settle(self) -> None:
        """Let a read still running in its thread finish before the reader is used again."""
        future = self._pending_read
        if future is not None and not future.done():
            await asyncio.wait([future])
        if self._pending_read is future:
            self._pending_read = None
            self._core.reading = False

    async def _fill_until_every_track_queued(self) -> None:
        """Read until each set-up track has a queued AU (RTP-Info needs its first timestamp)."""
        core = self._core
        horizon = float(core.position + READ_CHUNK)
        for _ in range(10):
            queued = {au.stream_index for au in core.queue if core.wanted(au)}
            if core.wanted_tracks() <= queued or core.eof or len(core.queue) >= MAX_QUEUED_UNITS:
                return
            await self._fill(horizon)
            horizon += float(READ_CHUNK * max(core.scale, 1))

    def _read_until(self, until: float, room: int) -> tuple[list[AccessUnit], bool]:
        """AUs of the set-up tracks up to ``until`` media seconds (in a worker thread unless cached)."""
        assert self._reader is not None
        units: list[AccessUnit] = []
        wanted = set(self.bindings)
        time_base = self._core.seconds_per_tick
        read = self._reader.read
        while len(units) < room:
            au = read()
            if au is None:
                return units, True
            if au.stream_index not in wanted:
                continue
            units.append(au)
            if au.dts * time_base[au.stream_index] > until:
                break
        return units, False

    @property
    def _cacheable(self) -> bool:
        p = self.presentation
        return self.unit_cache is not None and p.mode == "tracks" and not p.transcode

    @property
    def _cache_indices(self) -> frozenset[int]:
        return frozenset(t.track.index for t in self.presentation.tracks)

    def _warm_cache(self) -> None:
        """Start reading the file into the shared cache, for the sessions that come after this one."""
        if not self._cacheable:
            return
        assert self.unit_cache is not None
        info, indices = self.presentation.info, self._cache_indices
        if self.unit_cache.wanted(self.file, info, indices):
            future = asyncio.get_running_loop().run_in_executor(
                _cache_loads, self.unit_cache.load, self.file, info, indices
            )
            future.add_done_callback(_log_failure)

    def _open_reader(self) -> MediaReader | TransportStreamReader | TranscodingReader | CachedReader:
        info, loop = self.presentation.info, self.presentation.loop
        if self._cacheable:
            assert self.unit_cache is not None
            cached = self.unit_cache.get(self.file, info, self._cache_indices)
            if cached is not None:
                memo = cached.sender_memo.setdefault("payloads", PayloadMemo(cached.unit_ids))
                for binding in self.bindings.values():  # payloads too: packetized once, shared
                    binding.stream.payload_memo = memo
                return CachedReader(cached, list(self.bindings), loop=loop)
        for binding in self.bindings.values():
            binding.stream.payload_memo = None
        if self.presentation.mode == "mpegts" and self.presentation.source_info is not None:
            return TransportStreamReader(self.file, self.presentation.source_info, loop=loop)
        if self.presentation.transcode:
            source = self.presentation.source_info or info
            transcode = dict(self.presentation.transcode)
            return TranscodingReader(self.file, source, list(self.bindings), transcode, loop=loop)
        return MediaReader(self.file, info, list(self.bindings), loop=loop)


def _log_failure(future: asyncio.Future[None]) -> None:
    if not future.cancelled() and future.exception() is not None:
        log.warning("caching a file failed: %s", future.exception())
