"""G.711 over RTP (RFC 3551 4.5.14): PCMU (mu-law) and PCMA (A-law), one byte per sample.

At 8000 Hz mono these have the static payload types 0 and 8, which every telephony client
knows; other rates and channel counts get a dynamic type with ``PCMU/<rate>/<channels>``.
Packets carry 20 ms, the RFC 3551 default packet time that VoIP receivers size buffers for.
"""

from __future__ import annotations

from collections.abc import Mapping
from fractions import Fraction
from typing import ClassVar

from media.track import Track

from .base import DEFAULT_MAX_PAYLOAD_SIZE
from .pcm import PcmFormat

PACKET_TIME = Fraction(20, 1000)


class PcmuFormat(PcmFormat):
    """mu-law G.711 (FFmpeg ``pcm_mulaw``)."""

    encoding_name = "PCMU"
    static_types: ClassVar[Mapping[tuple[int, int], int]] = {(8000, 1): 0}
    packet_time = PACKET_TIME
    channels_in_rtpmap_when_mono = False

    def __init__(
        self, track: Track, payload_type: int = 0, max_payload_size: int = DEFAULT_MAX_PAYLOAD_SIZE
    ) -> None:
        super().__init__(track, payload_type, max_payload_size)


class PcmaFormat(PcmFormat):
    """A-law G.711 (FFmpeg ``pcm_alaw``)."""

    encoding_name = "PCMA"
    static_types: ClassVar[Mapping[tuple[int, int], int]] = {(8000, 1): 8}
    packet_time = PACKET_TIME
    channels_in_rtpmap_when_mono = False

    def __init__(
        self, track: Track, payload_type: int = 8, max_payload_size: int = DEFAULT_MAX_PAYLOAD_SIZE
    ) -> None:
        super().__init__(track, payload_type, max_payload_size)
