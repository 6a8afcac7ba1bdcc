"""One reader session of a live path: puts its own RTP headers on the shared payloads and sends.

Video starts on a keyframe (the reader waits at the live edge for the next one); audio starts
with the video so both begin together. A congested TCP reader drops packets (counted and
logged once) instead of holding up the fan-out.
"""

from __future__ import annotations

import logging
import time
from fractions import Fraction

from streamd.live.hub import LivePath, Payloads
from streamd.live.keyframe_gate import KeyframeGate
from streamd.playback import Binding
from streamd.rtp.clock import unix_to_ntp

log = logging.getLogger(__name__)

REPORT_INTERVAL = 5.0


class LiveReader:
    def __init__(self, path: LivePath, bindings: dict[int, Binding], label: str) -> None:
        self.path = path
        self.bindings = bindings
        self.label = label
        self.gate = KeyframeGate(any(b.is_video for b in bindings.values()), self._want_keyframe)
        self.dropped = 0
        self._next_report = 0.0

    @property
    def started(self) -> bool:
        """Whether video has begun (on a keyframe)."""
        return self.gate.open

    def attach(self) -> None:
        self.path.readers.add(self)

    def detach(self, *, bye: bool) -> None:
        self.path.readers.discard(self)
        if bye:
            ntp = unix_to_ntp(time.time())
            for index, binding in self.bindings.items():
                binding.sink.send_rtcp(binding.stream.goodbye(ntp, self._media_now(index)))

    def __call__(self, index: int, ticks: int, payloads: Payloads, keyframe: bool, leading: bool) -> None:
        binding = self.bindings.get(index)
        if binding is None:
            return
        if not self.gate.admit(binding.is_video, keyframe, leading):
            return
        if getattr(binding.sink, "congested", False):
            self.dropped += len(payloads)
            if self.dropped == len(payloads):
                log.warning("%s: too slow for the live stream; dropping packets", self.label)
        else:
            self._send(index, binding, ticks, payloads)
        now = time.time()
        if now >= self._next_report:
            self._next_report = now + REPORT_INTERVAL
            self._send_reports(now)

    def _send(self, index: int, binding: Binding, ticks: int, payloads: Payloads) -> None:
        """This reader's header on the shared payloads, out to its sink."""
        send = binding.sink.send_rtp
        for packet in binding.stream.pack(ticks, payloads):
            send(packet)

    def _want_keyframe(self) -> None:
        """The reader waits at the keyframe gate: the path's source is asked for one (each source
        rate-limits its requests per path), so it starts within a round trip, not a GOP."""
        request = self.path.request_keyframe
        if request is not None:
            request()

    def _media_now(self, index: int) -> Fraction:
        track = self.path.tracks.get(index)
        ticks = track.now_ticks(time.time()) if track else None
        clock = self.bindings[index].stream.clock_rate
        return Fraction(ticks or 0, clock)

    def _send_reports(self, now: float) -> None:
        ntp = unix_to_ntp(now)
        for index, binding in self.bindings.items():
            track = self.path.tracks.get(index)
            ticks = track.now_ticks(now) if track else None
            if ticks is not None:
                binding.sink.send_rtcp(
                    binding.stream.sender_report(ntp, Fraction(ticks, binding.stream.clock_rate))
                )
