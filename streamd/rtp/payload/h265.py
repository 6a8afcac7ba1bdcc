"""H.265/HEVC over RTP (RFC 7798), single session, no DONL (sprop-max-don-diff = 0).

Sender: single NAL unit packets, aggregation packets (AP, type 48) for runs of small NAL units
(VPS+SPS+PPS+SEI in one packet), fragmentation units (FU, type 49) for NAL units larger than the
payload budget. Receiver: the same three; PACI (type 50) and other types are ignored.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence

from media.access_unit import AccessUnit
from media.h265 import IRAP_TYPES, NAL_AUD, NAL_FD, NAL_PPS, NAL_SPS, NAL_VPS, complete, nal_type
from media.track import H265Config, Track

from .assembly import UnitAssembler, split_aggregate
from .base import (
    DEFAULT_MAX_PAYLOAD_SIZE,
    DepacketizedUnit,
    PayloadFormat,
    UnsupportedCodec,
)
from .nal_packing import pack_nal_units

AP = 48
FU = 49

# Types 48..63 are unspecified in H.265, and RFC 7798 gives 48..50 packet meanings: sending a NAL
# unit of such a type as is would be misread. AUD and filler data carry nothing RTP needs.
_UNDEFINED = frozenset(range(48, 64))
_NOT_SENT = frozenset({NAL_AUD, NAL_FD, *_UNDEFINED})
_PARAMETER_SETS = (NAL_VPS, NAL_SPS, NAL_PPS)

_START_CODE = b"\x00\x00\x00\x01"


class H265Format(PayloadFormat):
    """Packetizer and SDP attributes for one H.265 track."""

    encoding_name = "H265"
    clock_rate = 90000
    media = "video"
    min_payload_size = 4  # an FU needs three header bytes plus one byte of NAL unit

    def __init__(
        self, track: Track, payload_type: int = 96, max_payload_size: int = DEFAULT_MAX_PAYLOAD_SIZE
    ) -> None:
        super().__init__(payload_type, max_payload_size)
        config = track.config
        if not isinstance(config, H265Config) or not complete(config):
            raise UnsupportedCodec("H.265 track without VPS/SPS/PPS")
        self.track = track
        self.config = config

    def fmtp(self) -> str:
        """Parameter sets out of band, so clients can set up their decoder before the first IRAP."""

        def sprop(sets: tuple[bytes, ...]) -> str:
            return ",".join(base64.b64encode(ps).decode("ascii") for ps in sets)

        c = self.config
        return (
            f"{self.payload_type} sprop-vps={sprop(c.vps)};sprop-sps={sprop(c.sps)};sprop-pps={sprop(c.pps)}"
        )

    def packetize(self, au: AccessUnit) -> list[tuple[bytes, bool]]:
        """Payloads for one access unit, marker on the last; VPS/SPS/PPS go in band before an
        IRAP picture that lacks them, so late joiners can start at the next keyframe."""
        nals = au.nal_units or tuple(_split_annex_b(au.data))
        sendable = [nal for nal in nals if len(nal) > 2 and nal_type(nal) not in _NOT_SENT]
        payloads = self._payloads(self._with_parameter_sets(sendable))
        return [(payload, i == len(payloads) - 1) for i, payload in enumerate(payloads)]

    def depacketizer(self) -> H265Depacketizer:
        return H265Depacketizer()

    def _with_parameter_sets(self, nals: list[bytes]) -> list[bytes]:
        types = [nal_type(nal) for nal in nals]
        first_irap = next((i for i, t in enumerate(types) if t in IRAP_TYPES), None)
        if first_irap is None:
            return nals
        present = set(types[:first_irap])
        if all(t in present for t in _PARAMETER_SETS):
            return nals
        # Whatever is missing goes first, in VPS, SPS, PPS order, ahead of the ones present:
        # a repeated set is harmless, a set referring to an absent one is not.
        sets = {NAL_VPS: self.config.vps, NAL_SPS: self.config.sps, NAL_PPS: self.config.pps}
        missing = [ps for t in _PARAMETER_SETS if t not in present for ps in sets[t]]
        return [*missing, *nals]

    def _payloads(self, nals: Sequence[bytes]) -> list[bytes]:
        return pack_nal_units(nals, self.max_payload_size, 2, _aggregate, _fragment)


def _split_annex_b(data: bytes) -> list[bytes]:
    return [nal for chunk in data.split(b"\x00\x00\x01") if (nal := chunk.rstrip(b"\x00"))]


def _header(forbidden: int, kind: int, layer_id: int, tid: int) -> bytes:
    return bytes([forbidden | (kind << 1) | (layer_id >> 5), ((layer_id & 0x1F) << 3) | tid])


def _aggregate(nals: list[bytes]) -> list[bytes]:
    """A single NAL unit packet for one NAL unit, an AP for several, nothing for none.

    The AP header takes the OR of the F bits and the lowest LayerId and TemporalId (RFC 7798 4.4.2).
    """
    if len(nals) <= 1:
        return list(nals)
    forbidden = max(nal[0] & 0x80 for nal in nals)
    layer_id = min(((nal[0] & 1) << 5) | (nal[1] >> 3) for nal in nals)
    tid = min(nal[1] & 0x07 for nal in nals)
    parts = [_header(forbidden, AP, layer_id, tid)]
    for nal in nals:
        parts.append(len(nal).to_bytes(2, "big"))
        parts.append(nal)
    return [b"".join(parts)]


def _fragment(nal: bytes, limit: int) -> list[bytes]:
    """FUs: the payload header copies F, LayerId and TID; the FU header carries S, E and the type."""
    header = bytes([(nal[0] & 0x81) | (FU << 1), nal[1]])
    kind = nal_type(nal)
    body = nal[2:]
    step = limit - 3
    chunks = [body[i : i + step] for i in range(0, len(body), step)]
    payloads = []
    for i, chunk in enumerate(chunks):
        start = 0x80 if i == 0 else 0
        end = 0x40 if i == len(chunks) - 1 else 0
        payloads.append(header + bytes([start | end | kind]) + chunk)
    return payloads


class H265Depacketizer(UnitAssembler):
    """Rebuilds access units (lists of NAL units) from RFC 7798 payloads without DONL.

    An access unit ends at a packet with the marker bit, or when the timestamp changes. A lost
    packet inside an FU drops that NAL unit; the rest of the access unit still comes out.
    """

    def _accept(self, payload: bytes) -> None:
        if len(payload) < 3:
            return
        kind = nal_type(payload)
        if kind < AP:
            self._add(payload)
        elif kind == AP:
            for nal in split_aggregate(payload, 2):
                self._add(nal)
        elif kind == FU:
            self._accept_fu(payload)
        # PACI (50) and unspecified types are ignored.

    def _accept_fu(self, payload: bytes) -> None:
        fu_header, body = payload[2], payload[3:]
        if fu_header & 0x80:  # start: any unfinished fragment is lost
            kind = fu_header & 0x3F
            self._fragment = bytearray([(payload[0] & 0x81) | (kind << 1), payload[1]])
        elif self._fragment is None:  # its start was lost
            return
        if self._grow_fragment(body) and fu_header & 0x40:
            nal, self._fragment = bytes(self._fragment), None
            self._add(nal)

    def _add(self, nal: bytes) -> None:
        if len(nal) >= 3 and nal_type(nal) not in _UNDEFINED:
            self._keep(nal)

    def _unit(self, timestamp: int, parts: tuple[bytes, ...]) -> DepacketizedUnit:
        return DepacketizedUnit(timestamp, b"".join(_START_CODE + n for n in parts), parts)
