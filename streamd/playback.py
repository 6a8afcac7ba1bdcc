"""Real-time pacing of one session: read access units, send them when their time comes.

The reader (PyAV, blocking) runs in a worker thread a second or two ahead of the wall clock;
the event loop sends each access unit at ``origin_wall + (dts - origin_media)``, so media
time maps to wall time one to one and a 10 s clip takes 10 s. Every track of the session is
paced from one loop and shares one wall clock, which is also the NTP clock of the sender
reports: players can line audio up with video from them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from media.access_unit import AccessUnit
from media.reader import MediaReader
from streamd.rtp.clock import unix_to_ntp
from streamd.rtp.outgoing import OutgoingStream
from streamd.rtp.presentation import Presentation, StreamableTrack
from streamd.transport.sink import PacketSink

log = logging.getLogger(__name__)

LOOKAHEAD = Fraction(1)  # read more when less than this much media is queued
READ_CHUNK = Fraction(2)  # how far ahead of the wall clock one read goes
MAX_QUEUED_UNITS = 5000  # bounds memory whatever the file's packet rate
RTCP_INTERVAL = 5.0  # seconds between sender reports, randomised by 0.5..1.5 (RFC 3550 6.3.5)
SEND_SLACK = 0.002  # send AUs due within this many seconds together


@dataclass
class Binding:
    """One set-up track: what it is, its sender state, and where its packets go."""

    streamable: StreamableTrack
    stream: OutgoingStream
    sink: PacketSink

    @property
    def index(self) -> int:
        return self.streamable.track.index


@dataclass(frozen=True)
class StartInfo:
    """What a PLAY response reports: the actual start and, per track, the first seq and rtptime."""

    start: Fraction
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
    ) -> None:
        self.file = file
        self.presentation = presentation
        self.bindings = bindings
        self.label = label
        self.on_end = on_end
        self.position = Fraction(0)  # file time (seconds) where a resume continues
        self.finished = False
        self._reader: MediaReader | None = None
        self._queue: deque[AccessUnit] = deque()
        self._eof = False
        self._task: asyncio.Task[None] | None = None
        self._origin_wall = 0.0
        self._origin_media = Fraction(0)
        self._wall_to_unix = 0.0
        self._end_media: Fraction | None = None
        self._bye_sent = False
        self._pending_read: asyncio.Future[tuple[list[AccessUnit], bool]] | None = None

    # --- control -------------------------------------------------------------------------

    async def prepare(self, start: Fraction | None) -> StartInfo:
        """Seek to ``start`` (None: resume where paused, or begin) and report the RTP-Info."""
        loop = asyncio.get_running_loop()
        await self._settle()
        if self._reader is None:
            self._reader = await loop.run_in_executor(None, self._open_reader)
            if start is None:
                start = Fraction(0)
        if start is not None:
            origin = self.presentation.origin
            actual = await loop.run_in_executor(None, self._reader.seek, start + origin)
            self._queue.clear()
            self._eof = False
            self.finished = False
            self._bye_sent = False
            self._end_media = None
            self.position = actual
        await self._fill_until_every_track_queued()
        rtp_info = {}
        for index, binding in self.bindings.items():
            first = next((au for au in self._queue if au.stream_index == index), None)
            rtptime = (
                binding.stream.timestamp_for(first.pts)
                if first is not None
                else binding.stream.timestamp_at(self.position)
            )
            rtp_info[index] = (binding.stream.next_seq, rtptime)
        return StartInfo(max(Fraction(0), self.position - self.presentation.origin), rtp_info)

    def start(self) -> None:
        """Begin sending now, from ``position``."""
        loop = asyncio.get_running_loop()
        self._origin_wall = loop.time()
        self._origin_media = self.position
        self._wall_to_unix = time.time() - self._origin_wall
        self._task = loop.create_task(self._run(), name=f"playback {self.label}")

    async def pause(self) -> Fraction:
        """Stop sending; the next ``prepare(None)`` + ``start()`` resumes here. Returns npt."""
        if self._task is not None:
            self.position = self._media_now()
            await self._cancel()
        return self.npt

    @property
    def npt(self) -> Fraction:
        """Where playback stands, in normal play time (seconds from the presentation start)."""
        return max(Fraction(0), self.position - self.presentation.origin)

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
                if not self._eof and self._queued_until() < self._media_now() + LOOKAHEAD:
                    await self._fill(self._media_now() + READ_CHUNK)
                if not self._queue:
                    if self._eof:
                        break
                    continue
                now = loop.time()
                horizon = now + SEND_SLACK
                while self._queue and self._due(self._queue[0]) <= horizon:
                    au = self._queue.popleft()
                    binding = self.bindings.get(au.stream_index)
                    if binding is None:
                        continue
                    for packet in binding.stream.packetize(au):
                        binding.sink.send_rtp(packet)
                    self._note_end(au, binding)
                    await binding.sink.drain()
                if loop.time() >= next_report:
                    self._send_reports()
                    next_report = loop.time() + RTCP_INTERVAL * random.uniform(0.5, 1.5)
                if self._queue:
                    wait = self._due(self._queue[0]) - loop.time()
                    if wait > 0:
                        await asyncio.sleep(min(wait, max(0.0, next_report - loop.time()) + 0.001))
            await self._wait_for_media_end()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a broken file ends this session, never the server
            end_reason = f"read error: {exc}"
            log.warning("%s: %s", self.label, end_reason)
        self.finished = True
        self.position = self._end_media if self._end_media is not None else self._media_now()
        self._send_bye()
        self._task = None
        if self.on_end is not None:
            self.on_end(end_reason)

    async def _wait_for_media_end(self) -> None:
        """Hold the BYE until the last frame's time has come, so it arrives after the data."""
        if self._end_media is not None:
            wait = (
                self._origin_wall
                + float(self._end_media - self._origin_media)
                - asyncio.get_running_loop().time()
            )
            if wait > 0:
                await asyncio.sleep(min(wait, 5.0))
        await asyncio.sleep(0.05)

    def _note_end(self, au: AccessUnit, binding: Binding) -> None:
        tb = binding.streamable.track.time_base
        end = (max(au.pts, au.dts) + au.duration) * tb
        if self._end_media is None or end > self._end_media:
            self._end_media = end

    def _due(self, au: AccessUnit) -> float:
        tb = self.presentation.info.track(au.stream_index).time_base
        return self._origin_wall + float(au.dts * tb - self._origin_media)

    def _media_now(self) -> Fraction:
        elapsed = asyncio.get_running_loop().time() - self._origin_wall
        return self._origin_media + Fraction(elapsed).limit_denominator(1_000_000)

    def _queued_until(self) -> Fraction:
        if not self._queue:
            return Fraction(-(10**9))
        last = self._queue[-1]
        return last.dts * self.presentation.info.track(last.stream_index).time_base

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

    async def _settle(self) -> None:
        """Let a read still running in its thread finish before the reader is used again."""
        future, self._pending_read = self._pending_read, None
        if future is not None and not future.done():
            await asyncio.wait([future])

    async def _fill_until_every_track_queued(self) -> None:
        """Read until each set-up track has a queued AU (RTP-Info needs its first timestamp)."""
        horizon = self.position + READ_CHUNK
        wanted = set(self.bindings)
        for _ in range(10):
            queued = {au.stream_index for au in self._queue}
            if wanted <= queued or self._eof or len(self._queue) >= MAX_QUEUED_UNITS:
                return
            await self._fill(horizon)
            horizon += READ_CHUNK

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

    def _open_reader(self) -> MediaReader:
        return MediaReader(
            self.file, self.presentation.info, list(self.bindings), loop=self.presentation.loop
        )

    # --- RTCP ---------------------------------------------------------------------------

    def _clock_pair(self) -> tuple[int, Fraction]:
        """One instant as NTP wall time and as media time: the sync point for every track."""
        now = asyncio.get_running_loop().time()
        media = self._origin_media + Fraction(now - self._origin_wall).limit_denominator(1_000_000)
        if self._task is None:
            media = self.position
        return unix_to_ntp(now + self._wall_to_unix if self._wall_to_unix else time.time()), media

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
