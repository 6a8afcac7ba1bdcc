"""What every RTP payload format offers: SDP attributes, a packetizer and a matching depacketizer.

One module per format (RFC 6184 H.264, RFC 3640 AAC, ...) implements these two classes side by
side, so sender and receiver of a format are tested against each other. Nothing here does I/O:
payloads go in and out as bytes, and RTP headers (sequence numbers, timestamps, SSRC) belong to
the caller.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from enum import Enum, auto

from media.access_unit import AccessUnit

DEFAULT_MAX_PAYLOAD_SIZE = 1400
"""Fits a 1500-byte Ethernet MTU with IPv6 + UDP + RTP headers and a tunnel or two to spare."""


class UnsupportedCodec(Exception):
    """A track cannot be sent over RTP by this server; ``reason`` says why, for people to read."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class DepacketizedUnit:
    """One access unit rebuilt from RTP payloads.

    ``timestamp`` is the RTP timestamp of the unit (in the format's clock). For H.264,
    ``nal_units`` holds the NAL units and ``data`` their Annex B form, mirroring
    :class:`media.access_unit.AccessUnit`; for audio ``nal_units`` is empty.
    """

    timestamp: int
    data: bytes
    nal_units: tuple[bytes, ...] = ()


class PayloadFormat(ABC):
    """How one track's access units travel as RTP payloads, and how SDP announces that.

    ``payload_type`` is chosen by the caller (dynamic types: 96 + track position).
    """

    encoding_name: str
    clock_rate: int
    encoding_params: str | None = None  # audio channels, when the format signals them
    media: str  # "video" | "audio": the SDP m= media type
    min_payload_size: int = 16  # below this the format's own headers leave no room for data

    def __init__(self, payload_type: int, max_payload_size: int = DEFAULT_MAX_PAYLOAD_SIZE) -> None:
        if not 0 <= payload_type <= 127:
            raise ValueError(f"RTP payload type must be 0..127, got {payload_type}")
        if max_payload_size < self.min_payload_size:
            raise ValueError(
                f"max_payload_size must be at least {self.min_payload_size} bytes, got {max_payload_size}"
            )
        self.payload_type = payload_type
        self.max_payload_size = max_payload_size

    def rtpmap(self) -> str:
        """The ``a=rtpmap:`` value, e.g. ``96 H264/90000`` or ``97 mpeg4-generic/48000/2``."""
        value = f"{self.payload_type} {self.encoding_name}/{self.clock_rate}"
        if self.encoding_params:
            value += f"/{self.encoding_params}"
        return value

    @abstractmethod
    def fmtp(self) -> str | None:
        """The ``a=fmtp:`` value including the payload type, or None when the format needs none."""

    @abstractmethod
    def packetize(self, au: AccessUnit) -> list[tuple[bytes, bool]]:
        """RTP payloads and marker bits for one access unit, in sending order.

        Every payload is at most ``max_payload_size`` bytes. All packets of one access unit share
        one RTP timestamp, which the caller derives from ``au.pts`` in ``clock_rate`` units.
        """

    def packetize_timed(self, au: AccessUnit) -> list[tuple[bytes, bool, int]]:
        """Like :meth:`packetize`, plus each packet's RTP timestamp offset from the AU's own.

        The offset is in ``clock_rate`` ticks. Most formats send one AU at one instant (offset
        0); formats that cut a long AU into several packets of consecutive samples (PCM: a WAV
        packet holds up to half a second) override this so each packet carries the timestamp
        of its first sample, as RFC 3550 requires.
        """
        return [(payload, marker, 0) for payload, marker in self.packetize(au)]

    @abstractmethod
    def depacketizer(self) -> Depacketizer:
        """A fresh receiver for payloads produced with this format's parameters."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.rtpmap()!r}>"


# Units one RTP packet may yield (AUs of an RFC 3640 packet, NAL units of an aggregation packet):
# real senders put a few, or a few dozen, in one packet; tens of thousands of one-byte units in one
# 65 kB packet only multiply the work every reader causes, so such a packet is dropped.
MAX_UNITS_PER_PACKET = 256


class SequenceStatus(Enum):
    """How an RTP sequence number relates to the previous one a depacketizer saw."""

    NEXT = auto()
    GAP = auto()  # packets were lost or reordered: partial data in flight must be discarded
    DUPLICATE = auto()


class Depacketizer(ABC):
    """Rebuilds access units from the RTP payloads of one stream.

    Packets must arrive in sequence order (reordering is a jitter buffer's job, upstream). A
    sequence gap discards whatever partial data was being assembled, so only whole units (and,
    for H.264, whole NAL units) ever come out. Arbitrary bytes never raise: malformed payloads
    are dropped.
    """

    def __init__(self) -> None:
        self._last_seq: int | None = None

    @abstractmethod
    def push(self, payload: bytes, marker: bool, timestamp: int, seq: int) -> list[DepacketizedUnit]:
        """Feed one RTP payload; return the access units it completed (often none)."""

    def _sequence_status(self, seq: int) -> SequenceStatus:
        """Record ``seq`` and say whether it follows the previous packet (first packet: NEXT)."""
        seq &= 0xFFFF
        last, self._last_seq = self._last_seq, seq
        if last is None or seq == (last + 1) & 0xFFFF:
            return SequenceStatus.NEXT
        if seq == last:
            return SequenceStatus.DUPLICATE
        return SequenceStatus.GAP
