"""MPEG-2 transport stream over RTP (RFC 2250 section 2): whole 188-byte packets, payload type 33.

The timestamp is the 90 kHz time of the packet's first byte (from the stream's PCRs); the
marker bit is only for timestamp discontinuities, so it stays 0.
"""

from __future__ import annotations

from media.access_unit import AccessUnit
from media.track import Track

from .base import DEFAULT_MAX_PAYLOAD_SIZE, DepacketizedUnit, Depacketizer, PayloadFormat

TS_PACKET = 188
STATIC_PAYLOAD_TYPE = 33


class Mp2tFormat(PayloadFormat):
    encoding_name = "MP2T"
    clock_rate = 90000
    media = "video"
    min_payload_size = TS_PACKET

    def __init__(
        self,
        track: Track,
        payload_type: int = STATIC_PAYLOAD_TYPE,
        max_payload_size: int = DEFAULT_MAX_PAYLOAD_SIZE,
    ) -> None:
        super().__init__(STATIC_PAYLOAD_TYPE, max_payload_size)  # static, whatever number is passed
        self.packets_per_payload = max(1, max_payload_size // TS_PACKET)

    def rtpmap(self) -> str:
        return f"{self.payload_type} MP2T/90000"

    def fmtp(self) -> str | None:
        return None

    def packetize(self, au: AccessUnit) -> list[tuple[bytes, bool]]:
        step = self.packets_per_payload * TS_PACKET
        data = au.data[: len(au.data) // TS_PACKET * TS_PACKET]
        return [(data[i : i + step], False) for i in range(0, len(data), step)]

    def depacketizer(self) -> Depacketizer:
        return Mp2tDepacketizer()


class Mp2tDepacketizer(Depacketizer):
    """Whole TS packets out of each payload; anything not a multiple of 188 bytes is dropped."""

    def push(self, payload: bytes, marker: bool, timestamp: int, seq: int) -> list[DepacketizedUnit]:
        whole = payload[: len(payload) // TS_PACKET * TS_PACKET]
        if not whole or any(whole[i] != 0x47 for i in range(0, len(whole), TS_PACKET)):
            return []
        return [DepacketizedUnit(timestamp, whole)]
