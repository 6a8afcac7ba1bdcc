"""Real-time pacing of one session: read access units, send them when their time comes.

The reader (PyAV, blocking) runs in a worker thread a second or two ahead of the wall clock
(a cached file is read on the loop: it is only a list walk); the event loop sends each access
unit at ``origin_wall + (dts - origin_media) / (scale x speed)``, so at Scale 1 and Speed 1
media time maps to wall time one to one and a 10 s clip takes 10 s. Sessions do not sleep in
tasks of their own: the loop's one ``Pacer`` pumps every session whose next packet is due, so
a wake-up serves them all. Every track of the session shares one wall clock, which is also the
NTP clock of the sender reports: players can line audio up with video from them.

Scale (RFC 2326 12.34) changes the media rate: above 1 only video keyframes are sent, below 1
every video frame, and RTP time runs at the normal rate (see ``streamd.rtp.timeline``); audio
is not sent while Scale is not 1 (it cannot be played at another rate without resampling).
Speed (12.35) only makes delivery faster, timestamps unchanged.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from media.access_unit import AccessUnit
from media.reader import MediaReader
from media.transcode import TranscodingReader
from media.ts_source import TransportStreamReader
from media.unit_cache import CachedReader, UnitCache
from streamd.pacer import Pacer, loop_pacer
from streamd.rtp.clock import unix_to_ntp
from streamd.rtp.outgoing import OutgoingStream, PayloadMemo
from streamd.rtp.presentation import Presentation, StreamableTrack
from streamd.rtp.rtcp_interval import rtcp_interval
from streamd.rtp.timeline import Timeline
from streamd.transport.sink import PacketSink

log = logging.getLogger(__name__)

LOOKAHEAD = Fraction(1)  # wall seconds of media kept queued ahead of sending
READ_CHUNK = Fraction(2)  # wall seconds of media one read fetches
_LOOKAHEAD, _READ_CHUNK = float(LOOKAHEAD), float(READ_CHUNK)
_CACHED_READ_CHUNK = _LOOKAHEAD + 0.2  # from memory: about 0.2 s of media per read
MAX_QUEUED_UNITS = 5000  # bounds memory whatever the file's packet rate
MEDIA_END_WAIT = 5.0  # the BYE waits at most this long for the last frame's time
BYE_DELAY = 0.05  # and then this much more, so it does not overtake the data
AVG_RTCP_SIZE = 28 + 52 + 20  # IP/UDP + SR + SDES of about a 20-byte CNAME


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
    ) -> None:
        self.file = file
        self.unit_cache = unit_cache
        self.presentation = presentation
        self.bindings = bindings
        self.label = label
        self.on_end = on_end
        self.position = Fraction(0)  # file time (seconds) where a resume continues
        self.finished = False
        self.scale = Fraction(1)
        self.speed = Fraction(1)
        self._pacer = pacer
        self._end: Fraction | None = None  # file time where delivery stops (Range end)
        self._crossed_end: set[int] = set()
        self._timeline: Timeline | None = None
        self._reader: MediaReader | TransportStreamReader | TranscodingReader | CachedReader | None = None
        self._queue: deque[AccessUnit] = deque()
        self._eof = False
        self._active = False  # between start() and pause/stop/the end: the pacer pumps us
        self._ending_at: float | None = None  # all sent: the BYE goes out at this loop time
        self._next_report = 0.0
        self._refill_at = float("-inf")  # loop time before which the queue needs no read
        self._scale_one = True
        self._drain_task: asyncio.Task[None] | None = None
        self._origin_wall = 0.0
        self._origin_media = Fraction(0)
        self._wall_to_unix = 0.0
        self._last_sent: dict[int, AccessUnit] = {}  # per track, the last AU sent
        self._held: dict[int, deque[tuple[float, bytes]]] = {}  # per track, packets due later
        self._time_base = {t.index: float(t.time_base) for t in presentation.info.tracks}
        self._origin_float = 0.0
        self._rate_float = 1.0
        self._bye_sent = False
        self._reports_sent = 0
        self._pending_read: asyncio.Future[tuple[list[AccessUnit], bool]] | None = None
        self._read_upto: dict[int, int] = {}  # per track, the DTS of the last AU read

    # --- control -------------------------------------------------------------------------

    async def prepare(self, request: PlayRequest) -> StartInfo:
        """Position for a PLAY (seek, or resume where paused) and report the RTP-Info."""
        loop = asyncio.get_running_loop()
        await self._settle()
        origin = self.presentation.origin
        left_at = self.position
        start = request.start
        if self._reader is None and start is None:
            start = Fraction(0)
        if start == 0:
            # from the very beginning: a fresh reader, not a seek, so nothing before the first
            # keyframe (AAC priming frames) is skipped
            if self._reader is not None:
                await loop.run_in_executor(None, self._reader.close)
            self._reader = await loop.run_in_executor(None, self._open_reader)
            self._warm_cache()
            self._queue.clear()
            self._read_upto = {}
            self._eof = False
            self.position = origin
        elif start is not None:
            if self._reader is None:
                self._reader = await loop.run_in_executor(None, self._open_reader)
            actual = await loop.run_in_executor(None, self._reader.seek, start + origin)
            self._queue.clear()
            self._read_upto = {}
            self._eof = False
            self.position = actual
        self.finished = False
        self._bye_sent = False
        self._last_sent = {}
        self._end = None if request.end is None else request.end + origin
        self._crossed_end = set()
        if self._end is not None:
            self._drop_after_end()
        self.scale, self.speed = request.scale, request.speed
        if self._timeline is None:
            self._timeline = Timeline(self.position, self.position, self.scale)
        else:
            self._timeline = self._timeline.next_segment(left_at, self.position, self.scale)
        for binding in self.bindings.values():
            binding.stream.timeline = self._timeline
        await self._fill_until_every_track_queued()
        rtp_info = {}
        for index, binding in self.bindings.items():
            first = next((au for au in self._queue if au.stream_index == index and self._wanted(au)), None)
            rtptime = (
                binding.stream.timestamp_for(first.pts)
                if first is not None
                else binding.stream.timestamp_at(self.position)
            )
            rtp_info[index] = (binding.stream.next_seq, rtptime)
        end = None if self._end is None else self._end - origin
        return StartInfo(max(Fraction(0), self.position - origin), end, rtp_info)

    def start(self) -> None:
        """Begin sending now, from ``position``."""
        loop = asyncio.get_running_loop()
        if self._pacer is None:
            self._pacer = loop_pacer()
        now = loop.time()
        self._origin_wall = now
        self._origin_media = self.position
        self._origin_float = float(self.position)
        self._rate_float = float(self._rate)
        self._wall_to_unix = time.time() - now
        self._next_report = now  # the first SR right after the first packets
        self._ending_at = None
        self._scale_one = self.scale == 1
        self._refill_at = float("-inf")
        self._active = True
        self._pacer.schedule(self, now)

    async def pause(self) -> Fraction:
        """Stop sending; the next ``prepare`` + ``start`` resumes here. Returns npt."""
        if self._active:
            self.position = self._media_now()
            self._deactivate()
            self._send_held(float("inf"))  # already numbered: send now rather than leave a gap
        return self.npt

    @property
    def npt(self) -> Fraction:
        """Where playback stands, in normal play time (seconds from the presentation start)."""
        position = self._media_now() if self.running else self.position
        return max(Fraction(0), position - self.presentation.origin)

    async def stop(self, *, send_bye: bool = True) -> None:
        """End playback for good: BYE on every track, reader closed."""
        was_running = self._active
        self._deactivate()
        await self._settle()
        if send_bye and (was_running or self.finished) and not self._bye_sent:
            self._send_bye()
        if self._reader is not None:
            reader, self._reader = self._reader, None
            await asyncio.get_running_loop().run_in_executor(None, reader.close)

    def remove_track(self, index: int) -> None:
        """Per-track TEARDOWN: BYE for that track, then stop sending it."""
        binding = self.bindings.pop(index, None)
        if binding is not None:
            ntp, media = self._clock_pair()
            binding.sink.send_rtcp(binding.stream.goodbye(ntp, media))

    @property
    def running(self) -> bool:
        return self._active

    def _deactivate(self) -> None:
        self._active = False
        self._ending_at = None
        if self._pacer is not None:
            self._pacer.cancel(self)
        task, self._drain_task = self._drain_task, None
        if task is not None:
            task.cancel()

    def _wake(self) -> None:
        """Something we waited for (a read, a congested connection) is done: pump us now."""
        if self._active and self._pacer is not None and self._ending_at is None:
            self._pacer.schedule(self, asyncio.get_running_loop().time())

    # --- pacing: called by the loop's Pacer ------------------------------------------------

    def pump(self, now: float, horizon: float) -> float | None:
        """Send what is due up to ``horizon``; return when we are due next (None: until woken)."""
        if not self._active:
            return None
        try:
            return self._pump(now, horizon)
        except Exception as exc:  # a broken file ends this session, never the server
            self._finish(f"read error: {exc}", error=True)
            return None

    def _pump(self, now: float, horizon: float) -> float | None:
        if self._ending_at is not None:
            if now + 0.0005 >= self._ending_at:
                self._finish("end of stream")
                return None
            return self._ending_at
        queue = self._queue
        if queue:
            bindings = self.bindings
            scale_one = self._scale_one
            origin_wall, origin, rate, time_base = (
                self._origin_wall,
                self._origin_float,
                self._rate_float,
                self._time_base,
            )
            while queue:
                au = queue[0]
                due = origin_wall + (au.dts * time_base[au.stream_index] - origin) / rate
                if due > horizon:
                    break
                queue.popleft()
                binding = bindings.get(au.stream_index)
                if binding is None or not (scale_one or self._wanted(au)):
                    continue
                self._send_packets(au, binding, due)
                self._last_sent[au.stream_index] = au
                if not getattr(binding.sink, "writable", True):  # TCP above its high-water mark
                    self._wait_writable(binding)
                    return None
        if self._held:
            self._send_held(horizon)
        if now >= self._next_report:
            self._send_reports()
            self._next_report = self._loop_time() + self._report_interval()
        if now >= self._refill_at:
            self._read_ahead(now)
            queue = self._queue  # a Range end may have replaced it
        nxt = self._next_report
        if queue:
            au = queue[0]
            due = (
                self._origin_wall
                + (au.dts * self._time_base[au.stream_index] - self._origin_float) / self._rate_float
            )
            nxt = min(nxt, due)
        held_due = self._next_held() if self._held else None
        if held_due is not None:
            nxt = min(nxt, held_due)
        elif not queue and self._eof and self._pending_read is None:
            self._ending_at = self._media_end_due(now)
            return self._ending_at
        return nxt

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
        self._deactivate()
        self.finished = True
        last_end = self._last_sent_end
        self.position = last_end if last_end is not None else self._media_now()
        if self._end is not None and self.position > self._end:
            self.position = self._end
        self._send_bye()
        if self.on_end is not None:
            self.on_end(reason if self._end is None else "end of the requested range")

    @staticmethod
    def _loop_time() -> float:
        return asyncio.get_running_loop().time()

    @property
    def _rate(self) -> Fraction:
        """Media seconds per wall second."""
        return self.scale * self.speed

    def _wanted(self, au: AccessUnit) -> bool:
        """Scale 1 sends everything; other scales send video only, keyframes only above 1."""
        if self.scale == 1:
            return True
        binding = self.bindings.get(au.stream_index)
        if binding is None or not binding.is_video:
            return False
        return self.scale < 1 or au.keyframe

    def _report_interval(self) -> float:
        elapsed = max(asyncio.get_running_loop().time() - self._origin_wall, 0.5)
        octets = sum(b.stream.octet_count for b in self.bindings.values())
        self._reports_sent += 1
        return rtcp_interval(
            members=2,
            senders=1,
            session_bandwidth=octets / elapsed,
            avg_rtcp_size=AVG_RTCP_SIZE,
            we_sent=True,
            initial=self._reports_sent == 1,
        )

    def _media_end_due(self, now: float) -> float:
        """When the BYE may go: once the last frame's time has come, so it arrives after the data."""
        wait = 0.0
        last_end = self._last_sent_end
        if last_end is not None:
            due = self._origin_wall + (float(last_end) - self._origin_float) / self._rate_float
            wait = min(max(due - now, 0.0), MEDIA_END_WAIT)
        return now + wait + BYE_DELAY

    def _send_packets(self, au: AccessUnit, binding: Binding, due: float) -> None:
        """Send an AU's packets; those stamped later than the first (PCM cut into 20 ms packets
        from one long read) are held until their own time, so audio is paced, not burst."""
        held = self._held.get(binding.index)
        if held:  # what is still held for this track precedes this AU: keep the order
            while held:
                binding.sink.send_rtp(held.popleft()[1])
        packets, offsets = binding.stream.packets(au)
        if not packets:
            return
        if offsets is None:
            send_many = getattr(binding.sink, "send_rtp_many", None)  # optional for other sinks
            if send_many is not None:
                send_many(packets)
            else:
                for packet in packets:
                    binding.sink.send_rtp(packet)
            return
        if held is None:
            held = self._held[binding.index] = deque()
        binding.sink.send_rtp(packets[0])
        per_tick = 1 / (binding.stream.clock_rate * self._rate_float)
        for packet, offset in zip(packets[1:], offsets[1:], strict=True):
            if offset == 0 and not held:
                binding.sink.send_rtp(packet)
            else:
                held.append((due + offset * per_tick, packet))

    def _next_held(self) -> float | None:
        if not self._held:
            return None
        return min((q[0][0] for q in self._held.values() if q), default=None)

    def _send_held(self, horizon: float) -> None:
        for index, held in self._held.items():
            binding = self.bindings.get(index)
            while held and held[0][0] <= horizon:
                packet = held.popleft()[1]
                if binding is not None:
                    binding.sink.send_rtp(packet)

    @property
    def _last_sent_end(self) -> Fraction | None:
        """File time where the last sent frame ends (for the BYE and the position at the end)."""
        ends = [
            (max(au.pts, au.dts) + au.duration) * self.presentation.info.track(index).time_base
            for index, au in self._last_sent.items()
        ]
        return max(ends, default=None)

    def _seconds(self, au: AccessUnit) -> Fraction:
        return au.dts * self.presentation.info.track(au.stream_index).time_base

    def _media_now(self) -> Fraction:
        elapsed = Fraction(asyncio.get_running_loop().time() - self._origin_wall).limit_denominator(1_000_000)
        return self._origin_media + elapsed * self._rate

    def _queued_until(self) -> float:
        """Media seconds (DTS) of the last queued AU."""
        if not self._queue:
            return float("-inf")
        au = self._queue[-1]
        return au.dts * self._time_base[au.stream_index]

    # --- reading ---------------------------------------------------------------------------

    def _read_ahead(self, now: float) -> None:
        """Keep about ``LOOKAHEAD`` of media queued: read the next chunk when the queue runs low.

        A cached file is read here, on the loop (it is a walk over a list); anything else in a
        worker thread, while the queue keeps being sent; ``_absorb`` wakes us when it is in.
        """
        if self._eof or self._pending_read is not None or self._reader is None:
            return
        rate = self._rate_float
        media_now = self._origin_float + (now - self._origin_wall) * rate
        queued = self._queued_until()
        if queued >= media_now + _LOOKAHEAD * rate:
            # nothing to read before the queue is down to LOOKAHEAD: skip the check until then
            self._refill_at = self._origin_wall + (queued - self._origin_float) / rate - _LOOKAHEAD
            return
        # a cached read runs on the loop: small and often, so that sessions started together
        # do not all read a big chunk in the same wake-up and make everyone else's packets late
        chunk = _CACHED_READ_CHUNK if isinstance(self._reader, CachedReader) else _READ_CHUNK
        self._start_read(media_now + chunk * rate)

    def _start_read(self, until: float) -> asyncio.Future[tuple[list[AccessUnit], bool]] | None:
        """Read up to ``until`` media seconds: at once for a cached file, else in a worker thread
        (returns its future). The queue is bounded by ``MAX_QUEUED_UNITS``."""
        room = MAX_QUEUED_UNITS - len(self._queue)
        if self._reader is None or room <= 0:
            return None
        if not isinstance(self._reader, CachedReader) and self._cacheable:
            self._move_to_cache()
        if isinstance(self._reader, CachedReader):
            self._take(*self._read_until(until, room))
            return None
        future = asyncio.get_running_loop().run_in_executor(None, self._read_until, until, room)
        future.add_done_callback(self._absorb)
        self._pending_read = future
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
        if future.cancelled():
            return
        exc = future.exception()
        if exc is not None:
            if self._active:  # while playing, a broken file ends the session (else PLAY reports it)
                self._finish(f"read error: {exc}", error=True)
            return
        self._take(*future.result())
        self._wake()

    def _move_to_cache(self) -> None:
        """A session that began before its file was cached reads from the cache once it is in:
        demuxing per session in worker threads costs CPU and holds the GIL against the pacer."""
        assert self.unit_cache is not None and self._reader is not None
        if self.presentation.loop or self._eof:
            return
        cached = self.unit_cache.get(self.file, self.presentation.info, self._cache_indices)
        if cached is None:
            return
        reader = CachedReader(cached, list(self.bindings), loop=False)
        if not reader.resume_after(self._read_upto):
            return
        old, self._reader = self._reader, reader
        memo = cached.sender_memo.setdefault("payloads", PayloadMemo(cached.unit_ids))
        for binding in self.bindings.values():
            binding.stream.payload_memo = memo
        future = asyncio.get_running_loop().run_in_executor(None, old.close)
        future.add_done_callback(_log_failure)

    def _take(self, units: list[AccessUnit], eof: bool) -> None:
        self._refill_at = float("-inf")
        upto = self._read_upto
        for au in units:
            upto[au.stream_index] = au.dts
        self._queue.extend(units)
        self._eof = eof
        if self._end is not None:
            self._drop_after_end()

    def _drop_after_end(self) -> None:
        """Range end: AUs decoded at or after it are not sent; once every track is past it, stop."""
        assert self._end is not None
        kept: deque[AccessUnit] = deque()
        for au in self._queue:
            if self._seconds(au) >= self._end:
                self._crossed_end.add(au.stream_index)
            else:
                kept.append(au)
        self._queue = kept
        if set(self.bindings) <= self._crossed_end:
            self._eof = True

    async def _settle(self) -> None:
        """Let a read still running in its thread finish before the reader is used again."""
        future = self._pending_read
        if future is not None and not future.done():
            await asyncio.wait([future])
        if self._pending_read is future:
            self._pending_read = None

    async def _fill_until_every_track_queued(self) -> None:
        """Read until each set-up track has a queued AU (RTP-Info needs its first timestamp)."""
        horizon = float(self.position + READ_CHUNK)
        for _ in range(10):
            queued = {au.stream_index for au in self._queue if self._wanted(au)}
            wanted = {i for i, b in self.bindings.items() if self.scale == 1 or b.is_video}
            if wanted <= queued or self._eof or len(self._queue) >= MAX_QUEUED_UNITS:
                return
            await self._fill(horizon)
            horizon += float(READ_CHUNK * max(self.scale, 1))

    def _read_until(self, until: float, room: int) -> tuple[list[AccessUnit], bool]:
        """AUs of the set-up tracks up to ``until`` media seconds (in a worker thread unless cached)."""
        assert self._reader is not None
        units: list[AccessUnit] = []
        wanted = set(self.bindings)
        time_base = self._time_base
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
                None, self.unit_cache.load, self.file, info, indices
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

    # --- RTCP ---------------------------------------------------------------------------

    def _clock_pair(self) -> tuple[int, Fraction]:
        """One instant as NTP wall time and as media time: the sync point for every track."""
        now = asyncio.get_running_loop().time()
        media = self._media_now() if self._active else self.position
        unix = now + self._wall_to_unix if self._wall_to_unix else time.time()
        return unix_to_ntp(unix), media

    def _send_reports(self) -> None:
        ntp, media = self._clock_pair()
        for binding in self.bindings.values():
            binding.sink.send_rtcp(binding.stream.sender_report(ntp, media))

    def _send_bye(self) -> None:
        self._bye_sent = True
        ntp, media = self._clock_pair()
        for binding in self.bindings.values():
            if not binding.sink.closed:
                binding.sink.send_rtcp(binding.stream.goodbye(ntp, media))


def _log_failure(future: asyncio.Future[None]) -> None:
    if not future.cancelled() and future.exception() is not None:
        log.warning("caching a file failed: %s", future.exception())
