"""VP8 over RTP (RFC 7741).

Every payload starts with a payload descriptor. We send the extended form with a 15-bit picture
ID (so receivers can tell frames apart across losses), S=1 and partition index 0 on the first
packet of a frame, and the marker on its last. One format object serves every session of a file,
so the picture ID is not a counter: it is the frame's decode time in frame periods (consecutive
for constant frame rates, the same in every session); without a known frame rate it is left out.
Frames are cut into equal-budget pieces without regard to partitions, which RFC 7741 allows.
"""

from __future__ import annotations

from media.access_unit import AccessUnit
from media.track import Track

from .assembly import FrameCollector
from .base import (
    DEFAULT_MAX_PAYLOAD_SIZE,
    PayloadFormat,
)

_X, _N, _S = 0x80, 0x20, 0x10
_I, _L, _T, _K = 0x80, 0x40, 0x20, 0x10
_DESCRIPTOR_SIZE = 4  # X byte, I|L|T|K byte, two-byte picture ID


class Vp8Format(PayloadFormat):
    """Packetizer and SDP attributes for one VP8 track (no fmtp needed)."""

    encoding_name = "VP8"
    clock_rate = 90000
    media = "video"
    min_payload_size = _DESCRIPTOR_SIZE + 1

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
        extension = (
            b"\x00" if picture_id is None else bytes([_I, 0x80 | (picture_id >> 8), picture_id & 0xFF])
        )
        step = self.max_payload_size - 1 - len(extension)
        chunks = [au.data[i : i + step] for i in range(0, len(au.data), step)]
        out = []
        for i, chunk in enumerate(chunks):
            first = _X | (_S if i == 0 else 0)  # partition index 0 throughout
            out.append((bytes([first]) + extension + chunk, i == len(chunks) - 1))
        return out

    def depacketizer(self) -> Vp8Depacketizer:
        return Vp8Depacketizer()


def picture_id_for(track: Track, au: AccessUnit) -> int | None:
    """The 15-bit picture ID of ``au``: its DTS in frame periods, or None without a frame rate."""
    if not track.frame_rate:
        return None
    return round(au.dts * track.time_base * track.frame_rate) & 0x7FFF


def parse_descriptor(payload: bytes) -> tuple[bool, int, int | None, int] | None:
    """(start of partition, partition index, picture ID or None, descriptor size), or None if malformed."""
    if not payload:
        return None
    first = payload[0]
    pos = 1
    picture_id = None
    if first & _X:
        if len(payload) < 2:
            return None
        ext = payload[1]
        pos = 2
        if ext & _I:
            if pos >= len(payload):
                return None
            if payload[pos] & 0x80:
                if pos + 2 > len(payload):
                    return None
                picture_id = ((payload[pos] & 0x7F) << 8) | payload[pos + 1]
                pos += 2
            else:
                picture_id = payload[pos] & 0x7F
                pos += 1
        if ext & _L:
            pos += 1  # TL0PICIDX
        if ext & (_T | _K):
            pos += 1  # TID, Y, KEYIDX
    if pos > len(payload):
        return None
    return bool(first & _S), first & 0x0F, picture_id, pos


class Vp8Depacketizer(FrameCollector):
    """Rebuilds VP8 frames: a frame starts at S=1 with partition index 0 and ends at the marker
    (or a timestamp change). A lost packet loses the whole frame: VP8 cannot decode a partial one."""

    def _descriptor(self, payload: bytes, marker: bool) -> tuple[int, bool, bool] | None:
        parsed = parse_descriptor(payload)
        if parsed is None:
            return None
        start, partition, _picture_id, size = parsed
        return size, start and partition == 0, marker
