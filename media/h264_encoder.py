"""Access units out of a PyAV H.264 encoder: what the live (numpy) and transcoding paths share.

Its own module so that the transcoder does not import the numpy encoders with it (numpy is only
needed where a Python program hands in frames).
"""

from __future__ import annotations

from typing import Any

import av

from media.access_unit import AccessUnit
from media.errors import MediaError
from media.h264 import split_annexb


def encode_h264(encoder: Any, picture: Any, stream_index: int) -> list[AccessUnit]:
    """Encode ``picture`` (None flushes) with a PyAV H.264 encoder into Annex B access units."""
    try:
        packets = encoder.encode(picture)
    except (av.FFmpegError, ValueError) as exc:
        raise MediaError(f"H.264 encoder failed: {exc}") from exc
    units = []
    for packet in packets:
        data = bytes(packet)
        pts = packet.pts if packet.pts is not None else 0
        dts = packet.dts if packet.dts is not None else pts
        units.append(AccessUnit(stream_index, pts, dts, packet.is_keyframe, data, tuple(split_annexb(data))))
    return units
