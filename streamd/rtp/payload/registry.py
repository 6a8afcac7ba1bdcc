"""Which RTP payload format carries a track: one line per codec.

Adding a codec (H.265, Opus, ...) means one module with its format and depacketizer, plus one
entry in ``_FORMATS``. Payload type numbers are the caller's choice (dynamic: 96 + track position).
"""

from __future__ import annotations

from collections.abc import Callable

from media.track import Track

from .aac import AacFormat
from .base import DEFAULT_MAX_PAYLOAD_SIZE, PayloadFormat, UnsupportedCodec
from .h264 import H264Format

_FORMATS: dict[str, Callable[[Track, int, int], PayloadFormat]] = {
    "h264": H264Format,
    "aac": AacFormat,
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
