"""Real-time pacing of one session: read access units, send them when their time comes.

The reader (PyAV, blocking) runs in a worker thread a second or two ahead of the wall clock;
the event loop sends each access unit at ``origin_wall + (dts - origin_media) / (scale x speed)``,
so at Scale 1 and Speed 1 media time maps to wall time one to one and a 10 s clip takes 10 s.
Every track of the session is paced from one loop and shares one wall clock, which is also the
NTP clock of the sender reports: players can line audio up with video from them.

Scale (RFC 2326 12.34) changes the media rate: above 1 only video keyframes are sent, below 1
every video frame, and RTP time runs at the normal rate (see ``streamd.rtp.timeline``); audio
is not sent while Scale is not 1 (it cannot be played at another rate without resampling).
Speed (12.35) only makes delivery faster, timestamps unchanged.
"""

from __future__ import annotations

import asyncio
import contextlib
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
from streamd.rtp.clock import RTP_TS_MOD, unix_to_ntp
from streamd.rtp.outgoing import OutgoingStream, PayloadMemo
from streamd.rtp.presentation import Presentation, StreamableTrack
from streamd.rtp.rtcp_interval import rtcp_interval
from streamd.rtp.timeline import Timeline
from streamd.transport.sink import PacketSink

log = logging.getLogger(__name__)

LOOKAHEAD = Fraction(1)  # wall seconds of media kept queued ahead of sending
READ_CHUNK = Fraction(2)  # wall seconds of media one read fetches
MAX_QUEUED_UNITS = 5000  # bounds memory whatever the file's packet rate
SEND_SLACK = 0.002  # send AUs due within this many seconds together
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
        self._end: Fraction | None = None  # file time where delivery stops (Range end)
        self._crossed_end: set[int] = set()
        self._timeline: Timeline | None = None
        self._reader: MediaReader | TransportStreamReader | TranscodingReader | CachedReader | None = None
        self._queue: deque[AccessUnit] = deque()
        self._eof = False
        self._task: asyncio.Task[None] | None = None
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
            self._eof = False
            self.position = origin
        elif start is not None:
            if self._reader is None:
                self._reader = await loop.run_in_executor(None, self._open_reader)
            actual = await loop.run_in_executor(None, self._reader.seek, start + origin)
            self._queue.clear()
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
        self._origin_wall = loop.time()
        self._origin_media = self.position
        self._origin_float = float(self.position)
        self._rate_float = float(self._rate)
        self._wall_to_unix = time.time() - self._origin_wall
        self._task = loop.create_task(self._run(), name=f"playback {self.label}")

    async def pause(self) -> Fraction:
        """Stop sending; the next ``prepare`` + ``start`` resumes here. Returns npt."""
        if self._task is not None:
            self.position = self._media_now()
            await self._cancel()
            self._send_held(float("inf"))  # already numbered: send now rather than leave a gap
        return self.npt

    @property
    def npt(self) -> Fraction:
        """Where playback stands, in normal play time (seconds from the presentation start)."""
        position = self._media_now() if self.running else self.position
        return max(Fraction(0), position - self.presentation.origin)

    async def stop(self, *, send_bye: bool = True) -> None:
        """End playback for good: BYE on every track, reader closed."""
        was_running = self._task is not None
        await self._cancel()
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
        return self._task is not None and not self._task.done()

    # --- the pacing loop -------------------------------------------------------------------

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        next_report = loop.time()
        end_reason = "end of stream"
        try:
            while True:
                if not self._eof and self._queued_until() < self._media_now() + LOOKAHEAD * self._rate:
                    await self._fill(self._media_now() + READ_CHUNK * self._rate)
                if not self._queue:
                    held_due = self._next_held()
                    if self._eof and held_due is None:
                        break
                    if self._eof and held_due is not None:
                        await asyncio.sleep(max(0.0, held_due - loop.time()))
                        self._send_held(loop.time() + SEND_SLACK)
                    continue
                horizon = loop.time() + SEND_SLACK
                while self._queue and self._due(self._queue[0]) <= horizon:
                    au = self._queue.popleft()
                    binding = self.bindings.get(au.stream_index)
                    if binding is None or not self._wanted(au):
                        continue
                    self._send_packets(au, binding)
                    self._note_sent(au, binding)
                    await binding.sink.drain()
                self._send_held(loop.time() + SEND_SLACK)
                if loop.time() >= next_report:
                    self._send_reports()
                    next_report = loop.time() + self._report_interval()
                if self._queue:
                    due = self._due(self._queue[0])
                    held_due = self._next_held()
                    if held_due is not None:
                        due = min(due, held_due)
                    wait = due - loop.time()
                    if wait > 0:
                        await asyncio.sleep(min(wait, max(0.0, next_report - loop.time()) + 0.001))
            await self._wait_for_media_end()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a broken file ends this session, never the server
            end_reason = f"read error: {exc}"
            log.warning("%s: %s", self.label, end_reason)
        self.finished = True
        last_end = self._last_sent_end
        self.position = last_end if last_end is not None else self._media_now()
        if self._end is not None and self.position > self._end:
            self.position = self._end
        self._send_bye()
        self._task = None
        if self.on_end is not None:
            self.on_end(end_reason if self._end is None else "end of the requested range")

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

    async def _wait_for_media_end(self) -> None:
        """Hold the BYE until the last frame's time has come, so it arrives after the data."""
        last_end = self._last_sent_end
        if last_end is not None:
            due = self._origin_wall + float((last_end - self._origin_media) / self._rate)
            wait = due - asyncio.get_running_loop().time()
            if wait > 0:
                await asyncio.sleep(min(wait, 5.0))
        await asyncio.sleep(0.05)

    def _send_packets(self, au: AccessUnit, binding: Binding) -> None:
        """Send an AU's packets; those stamped later than the first (PCM cut into 20 ms packets
        from one long read) are held until their own time, so audio is paced, not burst."""
        held = self._held.setdefault(binding.index, deque())
        while held:  # what is still held for this track precedes this AU: keep the order
            binding.sink.send_rtp(held.popleft()[1])
        packets = binding.stream.packetize(au)
        if not packets:
            return
        binding.sink.send_rtp(packets[0])
        due = self._due(au)
        first_ts = int.from_bytes(packets[0][4:8], "big")
        per_tick = 1 / (binding.stream.clock_rate * self._rate_float)
        for packet in packets[1:]:
            offset = (int.from_bytes(packet[4:8], "big") - first_ts) % RTP_TS_MOD
            if offset == 0 and not held:
                binding.sink.send_rtp(packet)
            else:
                held.append((due + offset * per_tick, packet))

    def _next_held(self) -> float | None:
        return min((q[0][0] for q in self._held.values() if q), default=None)

    def _send_held(self, horizon: float) -> None:
        for index, held in self._held.items():
            binding = self.bindings.get(index)
            while held and held[0][0] <= horizon:
                packet = held.popleft()[1]
                if binding is not None:
                    binding.sink.send_rtp(packet)

    def _note_sent(self, au: AccessUnit, binding: Binding) -> None:
        self._last_sent[au.stream_index] = au

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

    def _due(self, au: AccessUnit) -> float:
        """Wall time to send ``au``: float arithmetic, since the wall clock is a float anyway."""
        return (
            self._origin_wall
            + (au.dts * self._time_base[au.stream_index] - self._origin_float) / self._rate_float
        )

    def _media_now(self) -> Fraction:
        elapsed = Fraction(asyncio.get_running_loop().time() - self._origin_wall).limit_denominator(1_000_000)
        return self._origin_media + elapsed * self._rate

    def _queued_until(self) -> Fraction:
        return self._seconds(self._queue[-1]) if self._queue else Fraction(-(10**9))

    # --- reading ---------------------------------------------------------------------------

    async def _fill(self, until: Fraction) -> None:
        """Read ahead in a worker thread.

        The read is shielded: if PAUSE cancels us mid-read, the thread's AUs still land in the
        queue, so a resume continues without a gap. Seeks wait for it via ``_settle``.
        """
        if self._reader is None or len(self._queue) >= MAX_QUEUED_UNITS:
            return
        room = MAX_QUEUED_UNITS - len(self._queue)
        future = asyncio.get_running_loop().run_in_executor(None, self._read_until, until, room)
        future.add_done_callback(self._absorb)
        self._pending_read = future
        await asyncio.shield(future)

    def _absorb(self, future: asyncio.Future[tuple[list[AccessUnit], bool]]) -> None:
        if future.cancelled() or future.exception() is not None:
            return
        units, eof = future.result()
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
        future, self._pending_read = self._pending_read, None
        if future is not None and not future.done():
            await asyncio.wait([future])

    async def _fill_until_every_track_queued(self) -> None:
        """Read until each set-up track has a queued AU (RTP-Info needs its first timestamp)."""
        horizon = self.position + READ_CHUNK
        for _ in range(10):
            queued = {au.stream_index for au in self._queue if self._wanted(au)}
            wanted = {i for i, b in self.bindings.items() if self.scale == 1 or b.is_video}
            if wanted <= queued or self._eof or len(self._queue) >= MAX_QUEUED_UNITS:
                return
            await self._fill(horizon)
            horizon += READ_CHUNK * max(self.scale, 1)

    def _read_until(self, until: Fraction, room: int) -> tuple[list[AccessUnit], bool]:
        """Runs in a worker thread: AUs of the set-up tracks up to ``until`` media seconds."""
        assert self._reader is not None
        units: list[AccessUnit] = []
        wanted = set(self.bindings)
        info = self.presentation.info
        while len(units) < room:
            au = self._reader.read()
            if au is None:
                return units, True
            if au.stream_index not in wanted:
                continue
            units.append(au)
            if au.dts * info.track(au.stream_index).time_base > until:
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
        media = self._media_now() if self._task is not None else self.position
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

    async def _cancel(self) -> None:
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def _log_failure(future: asyncio.Future[None]) -> None:
    if not future.cancelled() and future.exception() is not None:
        log.warning("caching a file failed: %s", future.exception())
