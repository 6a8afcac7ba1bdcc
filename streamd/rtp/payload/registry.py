"""Which RTP payload format carries a track: one line per codec.

Adding a codec (H.265, Opus, ...) means one module with its format and depacketizer, plus one
entry in ``_FORMATS``. Payload type numbers are the caller's choice (dynamic: 96 + track position).
"""

from __future__ import annotations

from collections.abc import Callable

from media.track import Track

from .aac import AacFormat
from .ac3 import Ac3Format
from .av1 import Av1Format
from .base import DEFAULT_MAX_PAYLOAD_SIZE, PayloadFormat, UnsupportedCodec
from .g711 import PcmaFormat, PcmuFormat
from .h264 import H264Format
from .h265 import H265Format
from .l16 import L16Format, L24Format
from .mjpeg import MjpegFormat
from .mp2t import Mp2tFormat
from .mpeg_audio import MpegAudioFormat
from .mpeg_video import MpegVideoFormat
from .opus import OpusFormat
from .vp8 import Vp8Format
from .vp9 import Vp9Format

_FORMATS: dict[str, Callable[[Track, int, int], PayloadFormat]] = {
    "h264": H264Format,
    "hevc": H265Format,
    "vp8": Vp8Format,
    "vp9": Vp9Format,
    "av1": Av1Format,
    "mjpeg": MjpegFormat,  # static payload type 26, whatever number is passed
    "mpeg1video": MpegVideoFormat,  # static payload type 32
    "mpeg2video": MpegVideoFormat,
    "mpegts": Mp2tFormat,  # a whole transport stream (per-path mode "mpegts"), static type 33
    "aac": AacFormat,
    "opus": OpusFormat,
    "pcm_mulaw": PcmuFormat,
    "pcm_alaw": PcmaFormat,
    "pcm_s16le": L16Format,
    "pcm_s16be": L16Format,
    "pcm_s24le": L24Format,
    "pcm_s24be": L24Format,
    "mp1": MpegAudioFormat,
    "mp1float": MpegAudioFormat,
    "mp2": MpegAudioFormat,
    "mp2float": MpegAudioFormat,
    "mp3": MpegAudioFormat,
    "mp3float": MpegAudioFormat,
    "ac3": Ac3Format,
}


def supported_codecs() -> tuple[str, ...]:
    """FFmpeg codec names we can send, for messages and for the docs."""
    return tuple(_FORMATS)


def payload_format_for(
    track: Track, payload_type: int, max_payload_size: int = DEFAULT_MAX_PAYLOAD_SIZE
) -> PayloadFormat:
    """The payload format for ``track``, or :class:`UnsupportedCodec` saying why there is none."""
    factory = _FORMATS.get(track.codec)
    if factory is None:
        raise UnsupportedCodec(f"no RTP payload format for codec {track.codec!r} yet")
    return factory(track, payload_type, max_payload_size)
