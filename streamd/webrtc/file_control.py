"""A file viewer's playback, steered over its WHEP session's data channel (``control.py``).

aiortc's ``RTCSctpTransport`` runs the data channel on the session's DTLS transport; commands
are applied to the viewer's own ``Playback`` one at a time (a lock shared with keyframe
restarts), and the position goes back twice a second.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from fractions import Fraction
from typing import Any

from aiortc import RTCSctpTransport
from aiortc.rtcsctptransport import RTCSctpCapabilities

from streamd.playback import Playback, PlayRequest
from streamd.webrtc.control import Command, error_message, parse_command, state_message

log = logging.getLogger(__name__)

REPORT_INTERVAL = 0.5


class FileControl:
    def __init__(self, playback: Playback, duration: Fraction | None, label: str) -> None:
        self.playback = playback
        self.duration = duration
        self.label = label
        self.lock = asyncio.Lock()
        self.paused = False
        self.rate = Fraction(1)
        self.sctp: RTCSctpTransport | None = None
        self._channels: list[Any] = []
        self._reporter: asyncio.Task[None] | None = None
        self.ended = False

    async def start(self, dtls: Any, remote_port: int) -> None:
        self.sctp = RTCSctpTransport(dtls)
        self.sctp.on("datachannel", self._channel)
        await self.sctp.start(RTCSctpCapabilities(maxMessageSize=65536), remote_port)
        self._reporter = asyncio.get_running_loop().create_task(self._report())

    async def stop(self) -> None:
        self.ended = True
        if self._reporter is not None:
            self._reporter.cancel()
        if self.sctp is not None:
            with contextlib.suppress(Exception):
                await self.sctp.stop()

    def _channel(self, channel: Any) -> None:
        self._channels.append(channel)
        channel.on("message", lambda message: asyncio.ensure_future(self._message(channel, message)))

    async def _message(self, channel: Any, message: str | bytes) -> None:
        try:
            command = parse_command(message, self.duration)
        except ValueError as exc:
            self._send(channel, error_message(str(exc)))
            return
        async with self.lock:
            if self.ended:
                return
            try:
                await self._apply(command)
            except Exception as exc:  # a seek the reader cannot do: the viewer hears why
                log.warning("%s: %s failed: %s", self.label, command.kind, exc)
                self._send(channel, error_message(f"{command.kind} failed: {exc}"))
                return
        log.info("%s: %s%s", self.label, command.kind, _detail(command))
        self._send(channel, self._state())

    async def _apply(self, command: Command) -> None:
        playback = self.playback
        if command.kind == "pause":
            if playback.running:
                await playback.pause()
            self.paused = True
            return
        if command.kind == "rate":
            assert command.rate is not None
            self.rate = command.rate
        was_running = playback.running
        if was_running:
            await playback.pause()
        start = command.position if command.kind == "seek" else None
        await playback.prepare(PlayRequest(start, scale=self.rate))
        if command.kind == "play" or not self.paused or was_running:
            self.paused = False
            playback.start()

    async def restart_at_keyframe(self) -> None:
        """A viewer's PLI: go on from the keyframe at or before where playback stands."""
        async with self.lock:
            if self.ended or not self.playback.running:
                return
            npt = await self.playback.pause()
            await self.playback.prepare(PlayRequest(npt, scale=self.rate))
            self.playback.start()

    def _state(self) -> str:
        return state_message(self.playback.npt, self.duration, self.paused, self.rate)

    async def _report(self) -> None:
        while not self.ended:
            await asyncio.sleep(REPORT_INTERVAL)
            state = self._state()
            for channel in self._channels:
                self._send(channel, state)

    @staticmethod
    def _send(channel: Any, text: str) -> None:
        if getattr(channel, "readyState", "") == "open":
            with contextlib.suppress(Exception):
                channel.send(text)


def _detail(command: Command) -> str:
    if command.position is not None:
        return f" to {float(command.position):g} s"
    if command.rate is not None:
        return f" {float(command.rate):g}x"
    return ""
