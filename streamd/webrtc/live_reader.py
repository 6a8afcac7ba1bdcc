"""A WebRTC viewer of a live path: a ``LiveReader`` whose converted tracks come from the path's
shared converter instead of the hub (the hub's own payloads of those tracks are not for it).

Its video packets are numbered into the stream's shared :class:`~streamd.webrtc.nack.PacketHistory`
(the hub track's, or the converter's), so its NACKs are answered without a history of its own.
A viewer that joined before the hub saw B-frames in the path is moved onto the path's converter
(:meth:`convert`) at the converter's first keyframe, its sequence numbers and timestamps going on
as before: same payload type, no renegotiation.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from fractions import Fraction

from streamd.live.hub import LivePath, Payloads
from streamd.live.reader import LiveReader
from streamd.playback import Binding
from streamd.rtp.clock import unix_to_ntp
from streamd.webrtc.convert import Converter
from streamd.webrtc.nack import Histories, PacketHistory, ViewerSequence

log = logging.getLogger(__name__)

SWITCH_STEP = 30  # the converter's first picture comes 1/30 s after the hub's last one, at least


class WebrtcLiveReader(LiveReader):
    def __init__(
        self,
        path: LivePath,
        bindings: dict[int, Binding],
        label: str,
        converted: dict[int, Converter],
        histories: Histories | None = None,
    ) -> None:
        super().__init__(path, bindings, label)
        self.converted = converted
        self.switching: dict[int, Converter] = {}  # converted late: waiting for its first keyframe
        self.histories = histories if histories is not None else Histories()
        self.held: dict[int, PacketHistory] = {}  # video track -> the history of what it sends now
        self.sequences: dict[int, ViewerSequence] = {}
        self._last_ticks: dict[int, int] = {}  # the latest timestamp sent per track (before offset)
        # called once per track the hub finds B-frames in while this viewer gets it as it is
        self.on_reordered: Callable[[int], None] | None = None
        self._told: set[int] = set()

    def attach(self) -> None:
        for index, binding in self.bindings.items():
            if binding.is_video:
                self._hold(index, self.converted.get(index, self.path))
                sequence = ViewerSequence(binding.stream.ssrc, binding.stream.payload_format.payload_type)
                self.sequences[index] = sequence
                binding.sink.sequence = sequence  # type: ignore[attr-defined]
        super().attach()
        for converter in self.converted.values():
            converter.listeners.add(self.converted_unit)

    def detach(self, *, bye: bool) -> None:
        for converter in self.converted.values():
            converter.listeners.discard(self.converted_unit)
        super().detach(bye=bye)
        for index in list(self.held):
            self._release(index)

    def convert(self, index: int, converter: Converter) -> None:
        """Take track ``index`` from ``converter`` from its next keyframe on (the hub's until then)."""
        self.converted[index] = self.switching[index] = converter
        converter.listeners.add(self.converted_unit)

    def __call__(self, index: int, ticks: int, payloads: Payloads, keyframe: bool, leading: bool) -> None:
        if index in self.converted:
            if index not in self.switching:
                return  # the converter's units are this viewer's
        elif self.on_reordered is not None and index not in self._told:
            track = self.path.tracks.get(index)
            if track is not None and track.order.reordered:
                self._told.add(index)
                self.on_reordered(index)
        super().__call__(index, ticks, payloads, keyframe, leading)

    def converted_unit(self, index: int, ticks: int, payloads: Payloads, key: bool, leading: bool) -> None:
        if index in self.switching:
            if not key:
                return
            self._switch(index, ticks)
        super().__call__(index, ticks, payloads, key, leading)

    def _switch(self, index: int, ticks: int) -> None:
        """From the hub's pictures to the converter's, at its keyframe stamped ``ticks``: the
        converter lags behind the hub, so its keyframe may be older than the latest picture sent;
        the timestamp offset then moves on past it (the browser's timestamps never go back)."""
        converter = self.switching.pop(index)
        stream = self.bindings[index].stream
        last = self._last_ticks.get(index)
        if last is not None and ticks <= last:
            stream.ts_offset = (stream.ts_offset + last - ticks + stream.clock_rate // SWITCH_STEP) % 2**32
        if index in self.held:
            self._release(index)
            self._hold(index, converter)
        log.info("%s: track %d of %s goes on from its H.264 conversion", self.label, index, self.path.name)

    def _send(self, index: int, binding: Binding, ticks: int, payloads: Payloads) -> None:
        stream = binding.stream
        last = self._last_ticks.get(index)
        self._last_ticks[index] = ticks if last is None else max(last, ticks)  # B-frames go back
        first = stream.next_seq
        super()._send(index, binding, ticks, payloads)
        history = self.held.get(index)
        if history is not None:
            now = time.monotonic()
            source = history.add(ticks, payloads, now)
            self.sequences[index].sent(first, history, source, len(payloads), stream.ts_offset, now)

    def _want_keyframe(self) -> None:
        for index, binding in self.bindings.items():
            converter = self.converted.get(index)
            if binding.is_video and converter is not None:
                converter.request_keyframe()
        super()._want_keyframe()  # a converter just started needs the source's keyframe too

    def _hold(self, index: int, source: object) -> None:
        self.held[index] = self.histories.hold(source, index)

    def _release(self, index: int) -> None:
        history = self.held.pop(index)
        self.histories.release(history)

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
