"""Linear PCM over RTP: L16 (RFC 3551 4.5.11) and L24 (RFC 3190), any rate and channel count.

Samples travel big-endian, channels interleaved, so little-endian input (WAV's ``pcm_s16le``,
``pcm_s24le``) is byte-swapped; big-endian input (AIFF) goes as is. L16 at 44100 Hz has the
static payload types 10 (stereo) and 11 (mono). Packets are as full as the payload limit allows
(1400 bytes: 350 stereo frames, 7.9 ms at 44.1 kHz), since uncompressed audio at CD quality
would otherwise need fragmenting, which RFC 3551 does not define.

Channels are sent in the file's order. RFC 3551 4.1 prescribes an order for more than two
channels that WAV's does not follow; receivers (FFmpeg, GStreamer) use their default layouts.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

from media.track import Track

from .base import DEFAULT_MAX_PAYLOAD_SIZE
from .pcm import PcmFormat, swap_bytes


class LinearPcmFormat(PcmFormat):
    """L16 or L24 for one of FFmpeg's signed PCM codecs (``pcm_s16le``, ``pcm_s24be``, ...)."""

    def __init__(
        self, track: Track, payload_type: int = 96, max_payload_size: int = DEFAULT_MAX_PAYLOAD_SIZE
    ) -> None:
        self.little_endian = track.codec.endswith("le")
        super().__init__(track, payload_type, max_payload_size)

    def to_network_order(self, data: bytes) -> bytes:
        return swap_bytes(data, self.sample_bytes) if self.little_endian else data


class L16Format(LinearPcmFormat):
    encoding_name = "L16"
    sample_bytes = 2
    static_types: ClassVar[Mapping[tuple[int, int], int]] = {(44100, 2): 10, (44100, 1): 11}


class L24Format(LinearPcmFormat):
    encoding_name = "L24"
    sample_bytes = 3
