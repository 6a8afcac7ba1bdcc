"""What the uncompressed audio formats of RFC 3551 share: packets of whole sample frames.

G.711 (PCMU/PCMA) and linear PCM (L16, L24) have no payload header: a packet is a run of sample
frames (one sample per channel, interleaved) and its RTP timestamp is that of its first frame,
counted at the sampling rate. A file's PCM packet can hold half a second, far more than one RTP
packet, so an AU is cut on frame boundaries and every piece gets its own timestamp offset
(:meth:`PayloadFormat.packetize_timed`).

RFC 3551 sets the marker bit only on the first packet after a silence; we send continuous audio,
so the marker is always 0.
"""

from __future__ import annotations

from collections.abc import Mapping
from fractions import Fraction
from typing import ClassVar

from media.access_unit import AccessUnit
from media.track import Track

from .base import DepacketizedUnit, Depacketizer, PayloadFormat, SequenceStatus, UnsupportedCodec


class PcmFormat(PayloadFormat):
    """A sample-frame packetizer; subclasses name the encoding and convert to network order.

    ``static_types`` maps (rate, channels) to an RFC 3551 static payload type, which replaces
    the dynamic one the caller chose. ``packet_time`` caps a packet's duration (G.711 telephony
    expects 20 ms); without it packets are as full as ``max_payload_size`` allows.
    """

    media = "audio"
    min_payload_size = 1
    sample_bytes: ClassVar[int] = 1
    static_types: ClassVar[Mapping[tuple[int, int], int]] = {}
    packet_time: ClassVar[Fraction | None] = None
    channels_in_rtpmap_when_mono: ClassVar[bool] = True

    def __init__(self, track: Track, payload_type: int, max_payload_size: int) -> None:
        rate, channels = track.sample_rate, track.channels
        if not rate or not channels:
            raise UnsupportedCodec(f"{track.codec} track without a sampling rate or channel count")
        payload_type = self.static_types.get((rate, channels), payload_type)
        super().__init__(payload_type, max_payload_size)
        self.track = track
        self.clock_rate = rate
        self.channels = channels
        self.frame_bytes = self.sample_bytes * channels
        if self.frame_bytes > max_payload_size:
            raise UnsupportedCodec(
                f"one sample frame ({channels} channels) is {self.frame_bytes} bytes, "
                f"more than the {max_payload_size}-byte payload limit"
            )
        frames = max_payload_size // self.frame_bytes
        if self.packet_time is not None:
            frames = min(frames, max(1, int(rate * self.packet_time)))
        self.frames_per_packet = frames
        if channels > 1 or self.channels_in_rtpmap_when_mono:
            self.encoding_params = str(channels)

    def fmtp(self) -> None:
        return None

    def to_network_order(self, data: bytes) -> bytes:
        """The samples as RFC 3551 sends them (most significant byte first); identity by default."""
        return data

    def packetize_timed(self, au: AccessUnit) -> list[tuple[bytes, bool, int]]:
        """Whole frames only: a truncated trailing frame (a damaged file) is not sent."""
        usable = len(au.data) - len(au.data) % self.frame_bytes
        data = self.to_network_order(au.data[:usable])
        step = self.frames_per_packet * self.frame_bytes
        return [(data[i : i + step], False, i // self.frame_bytes) for i in range(0, len(data), step)]

    def packetize(self, au: AccessUnit) -> list[tuple[bytes, bool]]:
        return [(payload, marker) for payload, marker, _ in self.packetize_timed(au)]

    def depacketizer(self) -> PcmDepacketizer:
        return PcmDepacketizer(self.frame_bytes)


class PcmDepacketizer(Depacketizer):
    """Every packet is a unit of its own, in network byte order, stamped with its first frame.

    A payload that is not a whole number of sample frames cannot be aligned with the channels
    and is dropped; loss needs no handling since packets do not depend on each other.
    """

    def __init__(self, frame_bytes: int) -> None:
        super().__init__()
        if frame_bytes < 1:
            raise ValueError(f"a sample frame has at least one byte, got {frame_bytes}")
        self._frame_bytes = frame_bytes

    def push(self, payload: bytes, marker: bool, timestamp: int, seq: int) -> list[DepacketizedUnit]:
        if self._sequence_status(seq) is SequenceStatus.DUPLICATE:
            return []
        if not payload or len(payload) % self._frame_bytes:
            return []
        return [DepacketizedUnit(timestamp & 0xFFFFFFFF, bytes(payload))]


def swap_bytes(data: bytes, width: int) -> bytes:
    """Reverse the byte order of every ``width``-byte sample (little <-> big endian).

    ``len(data)`` must be a multiple of ``width``.
    """
    if width == 1:
        return data
    out = bytearray(len(data))
    for i in range(width):
        out[i::width] = data[width - 1 - i :: width]
    return bytes(out)
