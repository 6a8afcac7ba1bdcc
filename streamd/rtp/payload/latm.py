"""Receiving AAC as RFC 6416 ``MP4A-LATM`` (config out of band, ``cpresent=0``).

Only the receiving side: we serve AAC as ``mpeg4-generic`` (RFC 3640, ``aac.py``), which every
player reads, and take LATM apart only when a publisher (GStreamer) sends it. An AudioMuxElement
may span several packets; the marker bit ends it.
"""

from __future__ import annotations

from media.errors import MediaError
from media.latm import StreamMuxConfig, split_audio_mux_element

from .base import DepacketizedUnit, Depacketizer, SequenceStatus

MAX_ELEMENT_BYTES = 64 * 1024  # an AudioMuxElement of a few AAC frames is a few KiB at most


class LatmDepacketizer(Depacketizer):
    def __init__(self, config: StreamMuxConfig, samples_per_frame: int = 1024) -> None:
        super().__init__()
        self._subframes = config.subframes
        self._samples_per_frame = samples_per_frame
        self._element = bytearray()
        self._timestamp = 0
        self._broken = False  # a packet of the current element was lost

    def push(self, payload: bytes, marker: bool, timestamp: int, seq: int) -> list[DepacketizedUnit]:
        status = self._sequence_status(seq)
        if status is SequenceStatus.DUPLICATE:
            return []
        if status is SequenceStatus.GAP and self._element:
            self._broken = True
        if not self._element:
            self._timestamp = timestamp
        self._element += payload
        if len(self._element) > MAX_ELEMENT_BYTES:
            self._broken = True
            self._element.clear()
        if not marker:
            return []
        element, broken = bytes(self._element), self._broken
        self._element.clear()
        self._broken = False
        if broken or not element:
            return []
        try:
            units = split_audio_mux_element(element, self._subframes)
        except MediaError:
            return []
        step = self._samples_per_frame
        return [
            DepacketizedUnit((self._timestamp + n * step) & 0xFFFFFFFF, unit)
            for n, unit in enumerate(units)
            if unit
        ]
