"""A WebRTC viewer of a live path: a ``LiveReader`` whose converted tracks come from the path's
shared converter instead of the hub (the hub's own payloads of those tracks are not for it)."""

from __future__ import annotations

import time
from fractions import Fraction

from streamd.live.hub import LivePath, Payloads
from streamd.live.reader import LiveReader
from streamd.playback import Binding
from streamd.rtp.clock import unix_to_ntp
from streamd.webrtc.convert import Converter


class WebrtcLiveReader(LiveReader):
    def __init__(
        self, path: LivePath, bindings: dict[int, Binding], label: str, converted: dict[int, Converter]
    ) -> None:
        super().__init__(path, bindings, label)
        self.converted = converted

    def attach(self) -> None:
        super().attach()
        for converter in self.converted.values():
            converter.listeners.add(self.converted_unit)

    def detach(self, *, bye: bool) -> None:
        for converter in self.converted.values():
            converter.listeners.discard(self.converted_unit)
        super().detach(bye=bye)

    def __call__(self, index: int, ticks: int, payloads: Payloads, keyframe: bool, leading: bool) -> None:
        if index not in self.converted:
            super().__call__(index, ticks, payloads, keyframe, leading)

    def converted_unit(self, index: int, ticks: int, payloads: Payloads, key: bool, leading: bool) -> None:
        super().__call__(index, ticks, payloads, key, leading)

    def _ticks_now(self, index: int, now: float) -> int | None:
        track = self.path.tracks.get(index)
        ticks = track.now_ticks(now) if track else None
        converter = self.converted.get(index)
        return converter.ticks(ticks) if converter is not None and ticks is not None else ticks

    def _media_now(self, index: int) -> Fraction:
        ticks = self._ticks_now(index, time.time())
        return Fraction(ticks or 0, self.bindings[index].stream.clock_rate)

    def _send_reports(self, now: float) -> None:
        ntp = unix_to_ntp(now)
        for index, binding in self.bindings.items():
            ticks = self._ticks_now(index, now)
            if ticks is not None:
                binding.sink.send_rtcp(
                    binding.stream.sender_report(ntp, Fraction(ticks, binding.stream.clock_rate))
                )
