"""AV1 over RTP (AOMedia "RTP Payload Format For AV1", v1.0).

A payload is a one-byte aggregation header (Z: the first element continues an OBU from the last
packet; Y: the last element continues in the next; W: element count, 0 = every element has a
LEB128 length; N: first packet of a coded video sequence) and OBU elements. We always use W = 0.

OBUs travel without their obu_size field (the spec says senders should strip it and clear
obu_has_size_field); the receiver puts it back, so it hands out the low-overhead bitstream format
files hold. Temporal delimiters and tile list OBUs are never sent; a keyframe temporal unit that
lacks a sequence header gets the one from the track's extradata in front, with N set.
"""

from __future__ import annotations

from media.access_unit import AccessUnit
from media.track import Track

from .assembly import UnitAssembler
from .base import (
    DEFAULT_MAX_PAYLOAD_SIZE,
    DepacketizedUnit,
    PayloadFormat,
)

OBU_SEQUENCE_HEADER = 1
OBU_TEMPORAL_DELIMITER = 2
OBU_TILE_LIST = 8
_NOT_SENT = frozenset({OBU_TEMPORAL_DELIMITER, OBU_TILE_LIST})
_Z, _Y, _N = 0x80, 0x40, 0x08
_HAS_EXTENSION, _HAS_SIZE = 0x04, 0x02


def leb128(value: int) -> bytes:
    """The shortest LEB128 encoding of ``value`` (AV1 spec 4.10.5)."""
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def read_leb128(data: bytes, pos: int) -> tuple[int, int] | None:
    """(value, position after it), or None if the data ends first or it exceeds 8 bytes."""
    value = 0
    for i in range(8):
        if pos + i >= len(data):
            return None
        byte = data[pos + i]
        value |= (byte & 0x7F) << (7 * i)
        if not byte & 0x80:
            return value, pos + i + 1
    return None


def obu_type(obu: bytes) -> int:
    return (obu[0] >> 3) & 0x0F


def split_obus(data: bytes) -> list[bytes]:
    """OBUs of a low-overhead bitstream, each as header (size flag cleared) + payload.

    An OBU without a size field runs to the end of the data. Truncated input yields the OBUs
    before the damage.
    """
    obus: list[bytes] = []
    pos = 0
    while pos < len(data):
        header = data[pos]
        header_size = 2 if header & _HAS_EXTENSION else 1
        if pos + header_size > len(data):
            break
        head = bytes([header & ~_HAS_SIZE & 0xFF]) + data[pos + 1 : pos + header_size]
        pos += header_size
        if header & _HAS_SIZE:
            parsed = read_leb128(data, pos)
            if parsed is None or parsed[1] + parsed[0] > len(data):
                break
            size, pos = parsed
        else:
            size = len(data) - pos
        obus.append(head + data[pos : pos + size])
        pos += size
    return obus


def with_size_field(obu: bytes) -> bytes:
    """An OBU as the low-overhead format stores it: size flag set, LEB128 size after the header."""
    header_size = 2 if obu[0] & _HAS_EXTENSION else 1
    header_size = min(header_size, len(obu))
    body = obu[header_size:]
    return bytes([obu[0] | _HAS_SIZE]) + obu[1:header_size] + leb128(len(body)) + body


def sequence_header_from_extradata(extradata: bytes) -> bytes | None:
    """The sequence header OBU of av1C extradata (4 bytes, then configOBUs) or of raw OBUs."""
    data = bytes(extradata)
    if data[:1] and data[0] & 0x80:  # av1C: marker bit and version 1
        data = data[4:]
    for obu in split_obus(data):
        if obu and obu_type(obu) == OBU_SEQUENCE_HEADER:
            return obu
    return None


class Av1Format(PayloadFormat):
    """Packetizer and SDP attributes for one AV1 track (no fmtp needed: profile 0 is the default)."""

    encoding_name = "AV1"
    clock_rate = 90000
    media = "video"
    min_payload_size = 4  # aggregation header, a one-byte length and at least one OBU byte

    def __init__(
        self, track: Track, payload_type: int = 96, max_payload_size: int = DEFAULT_MAX_PAYLOAD_SIZE
    ) -> None:
        super().__init__(payload_type, max_payload_size)
        self.track = track
        self.sequence_header = sequence_header_from_extradata(track.extradata)

    def fmtp(self) -> None:
        return None

    def packetize(self, au: AccessUnit) -> list[tuple[bytes, bool]]:
        """Payloads of one temporal unit, marker on the last."""
        obus = [obu for obu in split_obus(au.data) if obu_type(obu) not in _NOT_SENT]
        if not obus:
            return []
        new_sequence = False
        if au.keyframe:
            if all(obu_type(o) != OBU_SEQUENCE_HEADER for o in obus) and self.sequence_header:
                obus.insert(0, self.sequence_header)
            new_sequence = obu_type(obus[0]) == OBU_SEQUENCE_HEADER
        payloads = _pack(obus, self.max_payload_size - 1)
        out = []
        for i, (z, y, body) in enumerate(payloads):
            header = (_Z if z else 0) | (_Y if y else 0) | (_N if new_sequence and i == 0 else 0)
            out.append((bytes([header]) + body, i == len(payloads) - 1))
        return out

    def depacketizer(self) -> Av1Depacketizer:
        return Av1Depacketizer()


def _pack(obus: list[bytes], budget: int) -> list[tuple[bool, bool, bytes]]:
    """(Z, Y, elements) per packet, each element LEB128 length + bytes, within ``budget`` bytes."""
    packets: list[tuple[bool, bool, bytes]] = []
    body = bytearray()
    starts_with_continuation = False
    for obu in obus:
        pos = 0
        while pos < len(obu):
            room = budget - len(body)
            rest = len(obu) - pos
            if room - len(leb128(rest)) >= rest:
                body += leb128(rest) + obu[pos:]
                pos = len(obu)
                break
            take = room - len(leb128(room))
            if take <= 0:  # not even one byte fits: close this packet
                packets.append((starts_with_continuation, False, bytes(body)))
                body, starts_with_continuation = bytearray(), pos > 0
                continue
            body += leb128(take) + obu[pos : pos + take]
            pos += take
            packets.append((starts_with_continuation, True, bytes(body)))
            body, starts_with_continuation = bytearray(), True
    if body:
        packets.append((starts_with_continuation, False, bytes(body)))
    return packets


class Av1Depacketizer(UnitAssembler):
    """Rebuilds temporal units (low-overhead OBUs with size fields) from RTP payloads.

    A TU ends at the marker or a timestamp change. A lost packet drops the OBU it cut through;
    a fragment whose start was lost (Z set with nothing pending) is dropped too.
    """

    def _accept(self, payload: bytes) -> None:
        elements = _elements(payload)
        if elements is None:
            self._fragment = None
            return
        z, y = bool(payload[0] & _Z), bool(payload[0] & _Y)
        if not z:
            self._fragment = None  # an OBU left open by the previous packet is lost
        for i, element in enumerate(elements):
            if not (z and i == 0):  # a new OBU starts (else: continues the pending fragment)
                self._fragment = bytearray()
            if not self._grow_fragment(element):
                continue  # its start was lost, or it grew past the bound
            if self._fragment is not None and not (y and i == len(elements) - 1):
                self._add(bytes(self._fragment))
                self._fragment = None

    def _add(self, obu: bytes) -> None:
        if not obu or obu[0] & 0x80:
            return  # empty, or the forbidden bit set
        parts = split_obus(obu)  # drops a size field the sender left in, despite the spec
        if len(parts) != 1 or obu_type(parts[0]) in _NOT_SENT:
            return
        self._keep(with_size_field(parts[0]))

    def _unit(self, timestamp: int, parts: tuple[bytes, ...]) -> DepacketizedUnit:
        return DepacketizedUnit(timestamp, b"".join(parts))


def _elements(payload: bytes) -> list[bytes] | None:
    """The OBU elements of a payload, or None if it is malformed."""
    if not payload:
        return None
    count = (payload[0] >> 4) & 0x03
    elements = []
    pos = 1
    while pos < len(payload):
        if count and len(elements) == count - 1:
            elements.append(payload[pos:])  # the last of W elements has no length field
            return elements
        parsed = read_leb128(payload, pos)
        if parsed is None:
            return None
        size, pos = parsed
        if pos + size > len(payload):
            return None
        elements.append(payload[pos : pos + size])
        pos += size
    return elements
