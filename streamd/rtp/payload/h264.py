"""H.264 over RTP (RFC 6184), non-interleaved mode (packetization-mode=1).

Sender: single NAL unit packets, STAP-A to aggregate small consecutive NAL units (SPS+PPS+SEI in
one packet), FU-A to split NAL units larger than the payload budget. Receiver: the same three
packet types; STAP-B, MTAP and FU-B only exist in interleaved mode, which we never announce.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Sequence

from media.access_unit import AccessUnit
from media.track import H264Config, Track

from .assembly import UnitAssembler, split_aggregate
from .base import (
    DEFAULT_MAX_PAYLOAD_SIZE,
    DepacketizedUnit,
    PayloadFormat,
    UnsupportedCodec,
)
from .nal_packing import pack_nal_units

NAL_IDR = 5
NAL_SPS = 7
NAL_PPS = 8
NAL_AUD = 9
NAL_FILLER = 12
STAP_A = 24
FU_A = 28

# Dropped before sending: access unit delimiters and filler carry nothing a receiver needs (RTP
# marks AU boundaries itself), and types 0 and 24..31 are unspecified in H.264 but mean
# aggregation/fragmentation packets to an RFC 6184 receiver, which would misread them.
_UNDEFINED = frozenset({0, *range(24, 32)})
_NOT_SENT = frozenset({NAL_AUD, NAL_FILLER, *_UNDEFINED})

_START_CODE = b"\x00\x00\x00\x01"


def nal_type(nal: bytes) -> int:
    """The nal_unit_type of a NAL unit (its first byte's low five bits)."""
    return nal[0] & 0x1F


def split_annex_b(data: bytes) -> list[bytes]:
    """NAL units of an Annex B byte stream (3- or 4-byte start codes), without start codes."""
    nals = []
    for chunk in data.split(b"\x00\x00\x01"):
        nal = chunk.rstrip(b"\x00")  # trailing zeros: the leading zero of a 4-byte start code
        if nal:
            nals.append(nal)
    return nals


def _annex_b(nals: Iterable[bytes]) -> bytes:
    return b"".join(_START_CODE + nal for nal in nals)


class H264Format(PayloadFormat):
    """Packetizer and SDP attributes for one H.264 track."""

    encoding_name = "H264"
    clock_rate = 90000
    media = "video"
    min_payload_size = 3  # an FU-A needs two header bytes plus one byte of NAL unit

    def __init__(
        self, track: Track, payload_type: int = 96, max_payload_size: int = DEFAULT_MAX_PAYLOAD_SIZE
    ) -> None:
        super().__init__(payload_type, max_payload_size)
        config = track.config
        if not isinstance(config, H264Config) or not config.sps or not config.pps:
            raise UnsupportedCodec("H.264 track without SPS/PPS")
        if len(config.sps[0]) < 4:
            raise UnsupportedCodec("H.264 track with a truncated SPS (no profile and level bytes)")
        self.track = track
        self.config = config

    def fmtp(self) -> str:
        """Parameter sets out of band, so clients can start decoding before the first keyframe."""
        sprop = ",".join(base64.b64encode(ps).decode("ascii") for ps in (*self.config.sps, *self.config.pps))
        return (
            f"{self.payload_type} packetization-mode=1;profile-level-id={self.config.sps[0][1:4].hex()};"
            f"sprop-parameter-sets={sprop}"
        )

    def packetize(self, au: AccessUnit) -> list[tuple[bytes, bool]]:
        """Payloads for one access unit; the marker is set on the last one.

        Parameter sets are repeated in band in front of an IDR picture that lacks them, so
        receivers that joined late (or lost the SDP's) recover at the next keyframe.
        """
        nals = au.nal_units or tuple(split_annex_b(au.data))
        sendable = [nal for nal in nals if nal and nal_type(nal) not in _NOT_SENT]
        payloads = self._payloads(self._with_parameter_sets(sendable))
        return [(payload, i == len(payloads) - 1) for i, payload in enumerate(payloads)]

    def depacketizer(self) -> H264Depacketizer:
        return H264Depacketizer()

    def _with_parameter_sets(self, nals: list[bytes]) -> list[bytes]:
        types = [nal_type(nal) for nal in nals]
        if NAL_IDR not in types:
            return nals
        prefix = types[: types.index(NAL_IDR)]
        has_sps, has_pps = NAL_SPS in prefix, NAL_PPS in prefix
        if has_sps and has_pps:
            return nals
        if has_sps:  # only PPS missing: put it after the SPS it refers to
            at = len(prefix) - prefix[::-1].index(NAL_SPS)
            return [*nals[:at], *self.config.pps, *nals[at:]]
        missing = [*self.config.sps, *([] if has_pps else self.config.pps)]
        return [*missing, *nals]

    def _payloads(self, nals: Sequence[bytes]) -> list[bytes]:
        return pack_nal_units(nals, self.max_payload_size, 1, _aggregate, _fragment)


def _aggregate(nals: list[bytes]) -> list[bytes]:
    """A single NAL unit packet for one NAL unit, a STAP-A for several, nothing for none."""
    if len(nals) <= 1:
        return list(nals)
    forbidden = max(nal[0] & 0x80 for nal in nals)
    nri = max(nal[0] & 0x60 for nal in nals)
    parts = [bytes([forbidden | nri | STAP_A])]
    for nal in nals:
        parts.append(len(nal).to_bytes(2, "big"))
        parts.append(nal)
    return [b"".join(parts)]


def _fragment(nal: bytes, limit: int) -> list[bytes]:
    """FU-A packets: the NAL header moves into the FU indicator (F, NRI) and FU header (type)."""
    indicator = bytes([(nal[0] & 0xE0) | FU_A])
    body = nal[1:]
    step = limit - 2
    chunks = [body[i : i + step] for i in range(0, len(body), step)]
    payloads = []
    for i, chunk in enumerate(chunks):
        start = 0x80 if i == 0 else 0
        end = 0x40 if i == len(chunks) - 1 else 0
        payloads.append(indicator + bytes([start | end | nal_type(nal)]) + chunk)
    return payloads


class H264Depacketizer(UnitAssembler):
    """Rebuilds access units (lists of NAL units) from RFC 6184 non-interleaved payloads.

    An access unit ends at a packet with the marker bit, or when the timestamp changes (the
    marker packet was lost). A lost packet inside an FU-A drops that NAL unit; the access unit
    still comes out with its other NAL units, which decoders can conceal around.
    """

    def _accept(self, payload: bytes) -> None:
        if not payload:
            return
        kind = nal_type(payload)
        if 1 <= kind <= 23:
            self._add(payload)
        elif kind == STAP_A:
            for nal in split_aggregate(payload, 1):
                self._add(nal)
        elif kind == FU_A:
            self._accept_fu_a(payload)
        # STAP-B, MTAP16/24, FU-B (interleaved mode only) and undefined types are ignored.

    def _accept_fu_a(self, payload: bytes) -> None:
        if len(payload) < 2:
            return
        indicator, header, body = payload[0], payload[1], payload[2:]
        if header & 0x80:  # start: any unfinished fragment is lost
            self._fragment = bytearray([(indicator & 0xE0) | (header & 0x1F)])
        elif self._fragment is None:  # its start was lost
            return
        if self._grow_fragment(body) and header & 0x40:
            nal, self._fragment = bytes(self._fragment), None
            self._add(nal)

    def _add(self, nal: bytes) -> None:
        if nal_type(nal) not in _UNDEFINED:
            self._keep(nal)

    def _unit(self, timestamp: int, parts: tuple[bytes, ...]) -> DepacketizedUnit:
        return DepacketizedUnit(timestamp, _annex_b(parts), parts)
