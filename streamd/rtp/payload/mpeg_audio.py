"""MPEG-1/2 audio (layers I, II, III: MP1, MP2, MP3) over RTP, RFC 2250 section 3.5.

Static payload type 14 (``MPA/90000``, RFC 3551): FFmpeg 5.1 recognises MPEG audio over RTSP
only under that number, so the caller's dynamic type is overridden. Every payload starts with
a 4-byte header: 16 zero bits and the byte offset of the data within its frame. We send one
frame per packet (the latency argument of ``aac.py``) and split a frame larger than a packet
into fragments that share the frame's timestamp. The receiver also takes several frames per
packet, as other senders aggregate them.

RFC 2250 sets the marker bit only at the start of a talkspurt: always 0 for continuous audio.
"""

from __future__ import annotations

from dataclasses import dataclass

from media.access_unit import AccessUnit
from media.track import Track

from .base import (
    DEFAULT_MAX_PAYLOAD_SIZE,
    DepacketizedUnit,
    Depacketizer,
    PayloadFormat,
    SequenceStatus,
)

STATIC_PAYLOAD_TYPE = 14
CLOCK_RATE = 90000
HEADER_BYTES = 4
_MAX_FRAGMENTED = 0xFFFF  # the fragment offset is 16 bits

# Bit rates in kbit/s by bitrate index 1..14, for (MPEG-1?, layer).
_BITRATES = {
    (True, 1): (32, 64, 96, 128, 160, 192, 224, 256, 288, 320, 352, 384, 416, 448),
    (True, 2): (32, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384),
    (True, 3): (32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320),
    (False, 1): (32, 48, 56, 64, 80, 96, 112, 128, 144, 160, 176, 192, 224, 256),
    (False, 2): (8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
    (False, 3): (8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
}
# Sampling rates by version bits (0: MPEG-2.5, 2: MPEG-2, 3: MPEG-1) and rate index 0..2.
_SAMPLE_RATES = {0: (11025, 12000, 8000), 2: (22050, 24000, 16000), 3: (44100, 48000, 32000)}


@dataclass(frozen=True, slots=True)
class MpegAudioHeader:
    """What the 4-byte frame header of MPEG audio (ISO 11172-3 2.4.1.3) says about the frame."""

    layer: int  # 1, 2 or 3
    sample_rate: int
    frame_bytes: int  # including the header
    samples: int  # per channel, per frame


def parse_frame_header(data: bytes) -> MpegAudioHeader | None:
    """The header at the start of ``data``, or None if it is not one (or free-format, unsized)."""
    if len(data) < 4 or data[0] != 0xFF or data[1] & 0xE0 != 0xE0:
        return None
    version = (data[1] >> 3) & 3
    layer = 4 - ((data[1] >> 1) & 3)
    bitrate_index, rate_index, padding = data[2] >> 4, (data[2] >> 2) & 3, (data[2] >> 1) & 1
    if version == 1 or layer == 4 or bitrate_index in (0, 15) or rate_index == 3:
        return None
    mpeg1 = version == 3
    bitrate = _BITRATES[mpeg1, layer][bitrate_index - 1] * 1000
    sample_rate = _SAMPLE_RATES[version][rate_index]
    if layer == 1:
        return MpegAudioHeader(1, sample_rate, (12 * bitrate // sample_rate + padding) * 4, 384)
    per_frame = 1152 if layer == 2 or mpeg1 else 576
    return MpegAudioHeader(layer, sample_rate, per_frame // 8 * bitrate // sample_rate + padding, per_frame)


class MpegAudioFormat(PayloadFormat):
    """Packetizer and SDP attributes for an MPEG-1/2 audio track (FFmpeg ``mp2``, ``mp3float``...)."""

    encoding_name = "MPA"
    clock_rate = CLOCK_RATE
    media = "audio"
    min_payload_size = HEADER_BYTES + 4  # a first fragment must hold the whole frame header

    def __init__(
        self,
        track: Track,
        payload_type: int = STATIC_PAYLOAD_TYPE,
        max_payload_size: int = DEFAULT_MAX_PAYLOAD_SIZE,
    ) -> None:
        super().__init__(STATIC_PAYLOAD_TYPE, max_payload_size)
        self.track = track

    def fmtp(self) -> None:
        return None

    def packetize(self, au: AccessUnit) -> list[tuple[bytes, bool]]:
        """One frame per packet, or fragments of it; a frame too big to address (64 KiB) is dropped."""
        data = au.data
        if not data or len(data) > _MAX_FRAGMENTED:
            return []
        step = self.max_payload_size - HEADER_BYTES
        return [
            (b"\0\0" + i.to_bytes(2, "big") + data[i : i + step], False) for i in range(0, len(data), step)
        ]

    def depacketizer(self) -> MpegAudioDepacketizer:
        return MpegAudioDepacketizer()


class MpegAudioDepacketizer(Depacketizer):
    """Rebuilds MPEG audio frames from RFC 2250 payloads.

    A frame is complete when the bytes its header announces have arrived, so fragments need no
    marker bit; each fragment must continue exactly where the previous one ended, with the same
    timestamp. Several frames in one packet come out one by one, the n-th stamped with the
    samples of those before it. Data whose size the header cannot tell (free-format bit rate)
    comes out as it arrived in one packet.
    """

    def __init__(self) -> None:
        super().__init__()
        self._frame: bytearray | None = None
        self._frame_size = 0
        self._frame_timestamp = 0

    def push(self, payload: bytes, marker: bool, timestamp: int, seq: int) -> list[DepacketizedUnit]:
        status = self._sequence_status(seq)
        if status is SequenceStatus.DUPLICATE:
            return []
        if status is SequenceStatus.GAP:
            self._frame = None
        timestamp &= 0xFFFFFFFF
        data = payload[HEADER_BYTES:]
        if len(payload) <= HEADER_BYTES:
            self._frame = None
            return []
        offset = int.from_bytes(payload[2:4], "big")
        if offset:
            return self._continue_frame(offset, data, timestamp)
        self._frame = None
        header = parse_frame_header(data)
        if header is not None and header.frame_bytes > len(data):
            self._frame = bytearray(data)
            self._frame_size, self._frame_timestamp = header.frame_bytes, timestamp
            return []
        return _split_frames(bytes(data), timestamp)

    def _continue_frame(self, offset: int, data: bytes, timestamp: int) -> list[DepacketizedUnit]:
        frame = self._frame
        if frame is None or offset != len(frame) or timestamp != self._frame_timestamp:
            self._frame = None
            return []
        frame += data
        if len(frame) < self._frame_size:
            return []
        self._frame = None
        return [DepacketizedUnit(timestamp, bytes(frame))] if len(frame) == self._frame_size else []


def _split_frames(data: bytes, timestamp: int) -> list[DepacketizedUnit]:
    """Whole frames of one packet; whatever cannot be sized stays one unit with the rest."""
    units = []
    pos = samples = rate = 0
    while pos < len(data):
        header = parse_frame_header(data[pos : pos + 4])
        size = len(data) - pos
        if header is not None:
            size, rate = min(size, header.frame_bytes), header.sample_rate
        ticks = samples * CLOCK_RATE // rate if rate else 0
        units.append(DepacketizedUnit((timestamp + ticks) & 0xFFFFFFFF, data[pos : pos + size]))
        pos += size
        samples += header.samples if header is not None else 0
    return units
