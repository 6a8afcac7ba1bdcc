"""Opus over RTP (RFC 7587): one Opus packet per RTP packet, no payload header.

The rtpmap is always ``opus/48000/2`` and the RTP clock always 48 kHz, whatever the input rate
or channel count (RFC 7587 section 7): a decoder can always output stereo, and the sender says
what it actually sends with ``sprop-stereo``. ``stereo`` is deliberately absent: it states what a
*receiver* prefers, which is not ours to say in a DESCRIBE answer.

RFC 7587 carries a single Opus stream only. Files with more than two channels hold multistream
packets (channel mapping family 1 or 255) that a plain Opus decoder cannot read, so such tracks
are refused instead of being sent in a way no standard receiver would decode.

The Ogg or Matroska header packets (OpusHead, OpusTags) are configuration, not audio: they live
in the track's extradata and never go out as RTP packets.
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

CLOCK_RATE = 48000
_HEADER_MAGICS = (b"OpusHead", b"OpusTags")
_OPUS_HEAD_MIN = 19  # magic, version, channels, pre-skip, rate, gain, mapping family
_MAX_OPUS_PACKET = 1275 * 48  # 120 ms of the largest frames (RFC 6716 3.2.5): anything more is not Opus


class OpusFormat(PayloadFormat):
    """Packetizer and SDP attributes for one mono or stereo Opus track (FFmpeg ``opus``)."""

    encoding_name = "opus"
    clock_rate = CLOCK_RATE
    encoding_params = "2"
    media = "audio"
    min_payload_size = 1

    def __init__(
        self, track: Track, payload_type: int = 96, max_payload_size: int = DEFAULT_MAX_PAYLOAD_SIZE
    ) -> None:
        super().__init__(payload_type, max_payload_size)
        channels, streams = opus_head_layout(track.extradata)
        channels = channels or track.channels or 2
        if channels > 2 or streams > 1:
            raise UnsupportedCodec(
                f"{channels}-channel Opus is multistream, which RFC 7587 cannot carry "
                "(only mono and stereo Opus have a standard RTP mapping)"
            )
        self.track = track
        self.channels = channels

    def fmtp(self) -> str:
        return f"{self.payload_type} sprop-stereo={1 if self.channels == 2 else 0}"

    def packetize(self, au: AccessUnit) -> list[tuple[bytes, bool]]:
        """The Opus packet as is; one larger than the payload limit cannot be split and is dropped.

        RFC 7587 has no fragmentation: an Opus packet is at most 1275 bytes per 20 ms frame, and
        encoders writing files stay far below a 1400-byte payload.
        """
        data = au.data
        if not data or len(data) > self.max_payload_size or data.startswith(_HEADER_MAGICS):
            return []
        return [(data, False)]

    def depacketizer(self) -> OpusDepacketizer:
        return OpusDepacketizer()


class OpusDepacketizer(Depacketizer):
    """Each payload is one Opus packet; empty payloads (a padding-only packet) are dropped."""

    def push(self, payload: bytes, marker: bool, timestamp: int, seq: int) -> list[DepacketizedUnit]:
        if self._sequence_status(seq) is SequenceStatus.DUPLICATE:
            return []
        if not payload or len(payload) > _MAX_OPUS_PACKET:
            return []
        return [DepacketizedUnit(timestamp & 0xFFFFFFFF, bytes(payload))]


def opus_head_layout(extradata: bytes) -> tuple[int, int]:
    """Output channels and coded streams from an OpusHead (RFC 7845 5.1); (0, 0) if there is none.

    Mapping family 0 is one stream of one or two channels; other families carry a stream count.
    """
    if len(extradata) < _OPUS_HEAD_MIN or not extradata.startswith(b"OpusHead"):
        return 0, 0
    channels, family = extradata[9], extradata[18]
    if family == 0:
        return channels, 1
    streams = extradata[19] if len(extradata) > 19 else 0
    return channels, streams
