"""MPEG-1/MPEG-2 video over RTP (RFC 2250 section 3), static payload type 32 (``MPV/90000``).

Each payload starts with the 4-byte MPEG video-specific header: temporal reference, picture type
and motion vector codes copied from the picture header, S (a sequence header is in this packet),
B/E (the payload begins/ends at a slice boundary). Packets begin at start codes: the sequence,
GOP and picture headers lead the first packet of a picture, and whole slices are packed after
them; only a slice larger than a packet is split. The marker ends the picture. We never send the
optional MPEG-2 extension header (T = 0), which receivers do not need.
"""

from __future__ import annotations

from media.access_unit import AccessUnit
from media.track import Track

from .base import (
    DEFAULT_MAX_PAYLOAD_SIZE,
    DepacketizedUnit,
    Depacketizer,
    PayloadFormat,
    SequenceStatus,
)

STATIC_PAYLOAD_TYPE = 32
HEADER_SIZE = 4
_START = b"\x00\x00\x01"
_PICTURE, _SEQUENCE = 0x00, 0xB3
_MAX_PICTURE_SIZE = 32 * 1024 * 1024


def split_start_codes(data: bytes) -> list[bytes]:
    """The units of a picture, each beginning with its start code; bytes before the first are kept
    as a unit of their own so nothing is lost."""
    units = []
    pos = data.find(_START)
    if pos != 0:
        units.append(data[: pos if pos > 0 else len(data)])
    while pos >= 0:
        nxt = data.find(_START, pos + 3)
        units.append(data[pos : nxt if nxt >= 0 else len(data)])
        pos = nxt
    return [u for u in units if u]


def _code(unit: bytes) -> int:
    return unit[3] if len(unit) > 3 and unit.startswith(_START) else -1


def picture_fields(data: bytes) -> int:
    """The low 29 bits of the video-specific header that the picture header decides
    (TR, P, FBV, BFC, FFV, FFC), or 0 when there is no picture header."""
    pos = data.find(_START + bytes([_PICTURE]))
    if pos < 0 or pos + 8 > len(data):
        return 0
    bits = int.from_bytes(data[pos + 4 : pos + 8], "big")  # 32 bits after the start code
    temporal_reference = bits >> 22
    picture_type = (bits >> 19) & 0x07
    fields = (temporal_reference << 16) | (picture_type << 8)
    rest = bits & 0x7  # 3 bits after vbv_delay(16): full_pel_forward_vector and forward_f_code's top
    if picture_type in (2, 3):  # P and B pictures carry forward vector codes
        extra = data[pos + 8] if pos + 8 < len(data) else 0
        code = (rest << 8 | extra) >> 7  # FFV(1) FFC(3) start at bit 29 of the picture header
        fields |= code & 0x0F
        if picture_type == 3:  # B pictures add backward codes (FBV, BFC)
            fields |= ((extra >> 3) & 0x0F) << 4
    return fields


class MpegVideoFormat(PayloadFormat):
    """Packetizer and SDP attributes for one MPEG-1 or MPEG-2 video track."""

    encoding_name = "MPV"
    clock_rate = 90000
    media = "video"
    min_payload_size = HEADER_SIZE + 1

    def __init__(
        self,
        track: Track,
        payload_type: int = STATIC_PAYLOAD_TYPE,
        max_payload_size: int = DEFAULT_MAX_PAYLOAD_SIZE,
    ) -> None:
        super().__init__(STATIC_PAYLOAD_TYPE, max_payload_size)  # static: the caller's number is ignored
        self.track = track

    def fmtp(self) -> None:
        return None

    def packetize(self, au: AccessUnit) -> list[tuple[bytes, bool]]:
        if not au.data:
            return []
        fields = picture_fields(au.data)
        budget = self.max_payload_size - HEADER_SIZE
        # (body, begins at a slice/header boundary, ends at one, holds a sequence header)
        pieces: list[tuple[bytes, bool, bool, bool]] = []
        group = bytearray()
        has_sequence = False
        for unit in split_start_codes(au.data):
            if group and len(group) + len(unit) > budget:
                pieces.append((bytes(group), True, True, has_sequence))
                group, has_sequence = bytearray(), False
            if len(unit) > budget:
                chunks = [unit[i : i + budget] for i in range(0, len(unit), budget)]
                sequence = _code(unit) == _SEQUENCE
                for i, chunk in enumerate(chunks):
                    pieces.append((chunk, i == 0, i == len(chunks) - 1, sequence and i == 0))
                continue
            group += unit
            has_sequence |= _code(unit) == _SEQUENCE
        if group:
            pieces.append((bytes(group), True, True, has_sequence))
        out = []
        for i, (body, begin, end, sequence) in enumerate(pieces):
            header = fields | (0x2000 if sequence else 0) | (0x1000 if begin else 0) | (0x800 if end else 0)
            out.append((header.to_bytes(4, "big") + body, i == len(pieces) - 1))
        return out

    def depacketizer(self) -> MpegVideoDepacketizer:
        return MpegVideoDepacketizer()


class MpegVideoDepacketizer(Depacketizer):
    """Rebuilds pictures: payloads (minus their headers) of one timestamp, up to the marker.

    A lost packet drops the rest of its picture; the next picture starts afresh at a packet with
    B set (one starting at a start code).
    """

    def __init__(self) -> None:
        super().__init__()
        self._timestamp: int | None = None
        self._picture: bytearray | None = None

    def push(self, payload: bytes, marker: bool, timestamp: int, seq: int) -> list[DepacketizedUnit]:
        status = self._sequence_status(seq)
        if status is SequenceStatus.DUPLICATE:
            return []
        done: list[DepacketizedUnit] = []
        if timestamp != self._timestamp:
            done.extend(self._finish())
            self._timestamp = timestamp
            self._picture = bytearray()
        if status is SequenceStatus.GAP:
            self._picture = None
        if len(payload) < HEADER_SIZE or self._picture is None:
            return done
        size = HEADER_SIZE + (4 if payload[0] & 0x04 else 0)  # T: an MPEG-2 extension header follows
        self._picture += payload[size:]
        if len(self._picture) > _MAX_PICTURE_SIZE:
            self._picture = None
        elif marker:
            done.extend(self._finish())
        return done

    def _finish(self) -> list[DepacketizedUnit]:
        picture, self._picture = self._picture, None
        if not picture or self._timestamp is None:
            return []
        return [DepacketizedUnit(self._timestamp, bytes(picture))]
