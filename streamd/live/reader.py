"""One reader session of a live path: puts its own RTP headers on the shared payloads and sends.

Video starts on a keyframe (the reader waits at the live edge for the next one); audio starts
with the video so both begin together. A congested TCP reader drops packets (counted and
logged once) instead of holding up the fan-out.
"""

from __future__ import annotations

import logging
import struct
import time
from fractions import Fraction

from streamd.live.hub import LivePath, Payloads
from streamd.playback import Binding
from streamd.rtp.clock import unix_to_ntp

log = logging.getLogger(__name__)

_HEADER = struct.Struct("!BBHII")
REPORT_INTERVAL = 5.0


class LiveReader:
    def __init__(self, path: LivePath, bindings: dict[int, Binding], label: str) -> None:
        self.path = path
        self.bindings = bindings
        self.label = label
        self.started = not any(b.is_video for b in bindings.values())
        self._joined_open_gop = False  # started on a keyframe whose RASL pictures may follow
        self.dropped = 0
        self._next_report = 0.0

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
        if not self.started:
            if not (binding.is_video and keyframe):
                return
            self.started = self._joined_open_gop = True
        elif binding.is_video and self._joined_open_gop:
            if leading:  # refers to pictures from before we joined: the player could not decode it
                return
            self._joined_open_gop = False
        stream = binding.stream
        congested = getattr(binding.sink, "congested", False)
        timestamp = (stream.ts_offset + ticks) & 0xFFFFFFFF
        pt = stream.payload_format.payload_type
        for payload, marker in payloads:
            if congested:
                self.dropped += 1
                if self.dropped == 1:
                    log.warning("%s: too slow for the live stream; dropping packets", self.label)
                continue
            header = _HEADER.pack(0x80, (0x80 if marker else 0) | pt, stream.next_seq, timestamp, stream.ssrc)
            binding.sink.send_rtp(header + payload)
            stream.next_seq = (stream.next_seq + 1) & 0xFFFF
            stream.packet_count += 1
            stream.octet_count += len(payload)
        now = time.time()
        if now >= self._next_report:
            self._next_report = now + REPORT_INTERVAL
            self._send_reports(now)

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
