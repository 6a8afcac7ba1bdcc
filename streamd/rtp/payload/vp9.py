"""VP9 over RTP (RFC 9628), non-flexible mode, one spatial layer.

The payload descriptor carries a 15-bit picture ID (derived from the DTS, as for VP8), P
(inter-predicted) from the keyframe flag, B on the first packet of a frame and E on its last
(with the marker). Keyframes also carry a scalability structure giving the resolution, so
receivers can size their decoder early. A superframe from the file (hidden + shown frame)
travels as one frame, as decoders expect it.
"""

from __future__ import annotations

from media.access_unit import AccessUnit
from media.track import Track

from .assembly import FrameCollector
from .base import (
    DEFAULT_MAX_PAYLOAD_SIZE,
    PayloadFormat,
)
from .vp8 import picture_id_for

_I, _P, _L, _F, _B, _E, _V = 0x80, 0x40, 0x20, 0x10, 0x08, 0x04, 0x02
_DESCRIPTOR_SIZE = 3  # flags byte, two-byte picture ID (at most)
_SS_SIZE = 5  # N_S/Y/G byte, 16-bit width and height of the one spatial layer


class Vp9Format(PayloadFormat):
    """Packetizer and SDP attributes for one VP9 track (no fmtp needed)."""

    encoding_name = "VP9"
    clock_rate = 90000
    media = "video"
    min_payload_size = _DESCRIPTOR_SIZE + _SS_SIZE + 1

    def __init__(
        self, track: Track, payload_type: int = 96, max_payload_size: int = DEFAULT_MAX_PAYLOAD_SIZE
    ) -> None:
        super().__init__(payload_type, max_payload_size)
        self.track = track

    def fmtp(self) -> None:
        return None

    def packetize(self, au: AccessUnit) -> list[tuple[bytes, bool]]:
        """Payloads of one frame, marker on the last."""
        if not au.data:
            return []
        picture_id = picture_id_for(self.track, au)
        pid = b"" if picture_id is None else bytes([0x80 | (picture_id >> 8), picture_id & 0xFF])
        structure = b""
        if au.keyframe and self.track.width and self.track.height:
            width, height = self.track.width & 0xFFFF, self.track.height & 0xFFFF
            # N_S = 0 (one layer), Y = 1 (resolution present), G = 0
            structure = b"\x10" + width.to_bytes(2, "big") + height.to_bytes(2, "big")
        out: list[tuple[bytes, bool]] = []
        pos = 0
        while pos < len(au.data):
            first = pos == 0
            extra = structure if first else b""
            step = self.max_payload_size - 1 - len(pid) - len(extra)
            chunk = au.data[pos : pos + step]
            pos += len(chunk)
            last = pos >= len(au.data)
            flags = (
                (_I if pid else 0) | (0 if au.keyframe else _P) | (_B if first else 0) | (_E if last else 0)
            )
            flags |= _V if extra else 0
            descriptor = bytes([flags]) + pid + extra
            out.append((descriptor + chunk, last))
        return out

    def depacketizer(self) -> Vp9Depacketizer:
        return Vp9Depacketizer()


def descriptor_size(payload: bytes) -> int | None:
    """Bytes of payload descriptor at the start of ``payload``, or None if it is malformed."""
    if not payload:
        return None
    flags = payload[0]
    pos = 1
    if flags & _I:
        if pos >= len(payload):
            return None
        pos += 2 if payload[pos] & 0x80 else 1
    if flags & _L:
        pos += 1 if flags & _F else 2  # layer indices (+ TL0PICIDX in non-flexible mode)
    if flags & _F and flags & _P:
        for _ in range(3):  # up to three reference indices, each saying whether another follows
            if pos >= len(payload):
                return None
            more = payload[pos] & 0x01
            pos += 1
            if not more:
                break
    if flags & _V:
        if pos >= len(payload):
            return None
        ss = payload[pos]
        pos += 1
        if ss & 0x10:  # Y: a width and height per spatial layer
            pos += 4 * ((ss >> 5) + 1)
        if ss & 0x08:  # G: picture group description
            if pos >= len(payload):
                return None
            count = payload[pos]
            pos += 1
            for _ in range(count):
                if pos >= len(payload):
                    return None
                refs = (payload[pos] >> 2) & 0x03
                pos += 1 + refs
    return pos if pos <= len(payload) else None


class Vp9Depacketizer(FrameCollector):
    """Rebuilds VP9 frames from B..E packet runs; a lost packet loses the frame it belonged to."""

    def _descriptor(self, payload: bytes, marker: bool) -> tuple[int, bool, bool] | None:
        size = descriptor_size(payload)
        if size is None:
            return None
        return size, bool(payload[0] & _B), bool(payload[0] & _E)
