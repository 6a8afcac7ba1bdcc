"""AC-3 (Dolby Digital) over RTP, RFC 4184: ``AC3/<rate>/<channels>``, a 2-byte payload header.

The header holds 6 zero bits, the frame type FT and a count NF::

    FT 0  one or more whole frames (NF of them)
    FT 1  first fragment of a frame, holding at least 5/8 of it (a decoder can start on it)
    FT 2  first fragment holding less than 5/8
    FT 3  a later fragment; for FT 1..3, NF is the number of fragments of the frame

The RTP clock is the sampling rate (32, 44.1 or 48 kHz), 1536 ticks per frame; the marker bit is
set on a packet that completes a frame. We send one frame per packet (a stereo frame is a few
hundred bytes; aggregating would only add latency) and fragment larger ones (5.1 at 640 kbit/s
is 2560 bytes).
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
    UnsupportedCodec,
)

HEADER_BYTES = 2
SAMPLES_PER_FRAME = 1536
FT_WHOLE, FT_FIRST_MOST, FT_FIRST_LESS, FT_LATER = 0, 1, 2, 3
SAMPLE_RATES = (48000, 44100, 32000)  # by fscod
_MAX_FRAGMENTS = 255
# Nominal bit rates (kbit/s) by frmsizecod // 2 (ATSC A/52 table 5.18).
_BITRATES = (32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384, 448, 512, 576, 640)


def ac3_frame_size(data: bytes) -> int | None:
    """Bytes of the AC-3 frame starting ``data`` (from its syncinfo), or None if it is not one."""
    if len(data) < 5 or data[0] != 0x0B or data[1] != 0x77:
        return None
    fscod, frmsizecod = data[4] >> 6, data[4] & 0x3F
    if fscod == 3 or frmsizecod >= 2 * len(_BITRATES):
        return None
    kbps = _BITRATES[frmsizecod // 2]
    if fscod == 1:  # 44.1 kHz frames alternate between two sizes to average the bit rate
        words = kbps * SAMPLES_PER_FRAME * 1000 // (16 * 44100) + (frmsizecod & 1)
    else:
        words = kbps * SAMPLES_PER_FRAME * 1000 // (16 * SAMPLE_RATES[fscod])
    return 2 * words


class Ac3Format(PayloadFormat):
    """Packetizer and SDP attributes for an AC-3 track (FFmpeg ``ac3``)."""

    encoding_name = "AC3"
    media = "audio"
    min_payload_size = HEADER_BYTES + 16  # the largest frame (3840 bytes) then fits in 255 fragments

    def __init__(
        self, track: Track, payload_type: int = 96, max_payload_size: int = DEFAULT_MAX_PAYLOAD_SIZE
    ) -> None:
        super().__init__(payload_type, max_payload_size)
        if track.sample_rate not in SAMPLE_RATES:
            raise UnsupportedCodec(f"AC-3 at {track.sample_rate} Hz: RFC 4184 allows 32, 44.1 and 48 kHz")
        self.track = track
        self.clock_rate = track.sample_rate
        self.encoding_params = str(track.channels) if track.channels else None

    def fmtp(self) -> None:
        return None

    def packetize(self, au: AccessUnit) -> list[tuple[bytes, bool]]:
        """One frame per packet, or up to 255 fragments; anything bigger is not AC-3 and is dropped."""
        data = au.data
        step = self.max_payload_size - HEADER_BYTES
        if not data:
            return []
        if len(data) <= step:
            return [(bytes([FT_WHOLE, 1]) + data, True)]
        chunks = [data[i : i + step] for i in range(0, len(data), step)]
        if len(chunks) > _MAX_FRAGMENTS:
            return []
        first = FT_FIRST_MOST if 8 * len(chunks[0]) >= 5 * len(data) else FT_FIRST_LESS
        return [
            (bytes([first if i == 0 else FT_LATER, len(chunks)]) + chunk, i == len(chunks) - 1)
            for i, chunk in enumerate(chunks)
        ]

    def depacketizer(self) -> Ac3Depacketizer:
        return Ac3Depacketizer()


class Ac3Depacketizer(Depacketizer):
    """Rebuilds AC-3 frames from RFC 4184 payloads.

    Several whole frames in one packet are split at the sizes their syncinfo gives (frame n is
    stamped n * 1536 ticks later); a fragmented frame completes when all NF fragments arrived in
    sequence with the first fragment's timestamp.
    """

    def __init__(self) -> None:
        super().__init__()
        self._frame: bytearray | None = None
        self._fragments_expected = 0
        self._fragments_seen = 0
        self._frame_timestamp = 0

    def push(self, payload: bytes, marker: bool, timestamp: int, seq: int) -> list[DepacketizedUnit]:
        status = self._sequence_status(seq)
        if status is SequenceStatus.DUPLICATE:
            return []
        if status is SequenceStatus.GAP:
            self._frame = None
        timestamp &= 0xFFFFFFFF
        if len(payload) <= HEADER_BYTES or payload[0] & 0xFC:
            self._frame = None
            return []
        frame_type, count, data = payload[0] & 3, payload[1], payload[HEADER_BYTES:]
        if frame_type == FT_WHOLE:
            self._frame = None
            return _split_frames(bytes(data), count, timestamp)
        if frame_type != FT_LATER:
            self._frame = bytearray(data)
            self._fragments_expected, self._fragments_seen = count, 1
            self._frame_timestamp = timestamp
        elif self._frame is None or (count, timestamp) != (self._fragments_expected, self._frame_timestamp):
            self._frame = None
            return []
        else:
            self._frame += data
            self._fragments_seen += 1
        if self._fragments_seen < self._fragments_expected:
            return []
        frame, self._frame = bytes(self._frame), None
        complete = self._fragments_seen == self._fragments_expected  # not so when NF was 0
        return [DepacketizedUnit(timestamp, frame)] if complete else []


def _split_frames(data: bytes, count: int, timestamp: int) -> list[DepacketizedUnit]:
    """The whole frames of an FT 0 packet; data the syncinfo cannot size stays one unit."""
    units = []
    pos = 0
    while pos < len(data):
        size = ac3_frame_size(data[pos : pos + 5]) if count > 1 else None
        size = min(size, len(data) - pos) if size else len(data) - pos
        stamp = (timestamp + len(units) * SAMPLES_PER_FRAME) & 0xFFFFFFFF
        units.append(DepacketizedUnit(stamp, data[pos : pos + size]))
        pos += size
    return units
