"""One coded frame as read from a file, with its timestamps in the track clock."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class AccessUnit:
    """One access unit (a coded picture, or one coded audio frame).

    Timestamps are integer ticks of the track's ``time_base`` (never floats), always present:
    the reader fills a missing PTS from the DTS and vice versa. AUs come in decode order, so
    with B-frames ``pts`` is not monotonic while ``dts`` is.

    ``data`` is the codec's elementary payload with container framing removed (ADTS headers
    stripped for AAC). For H.264 (and later H.265) ``nal_units`` holds the NAL units without
    start codes or length prefixes, and ``data`` is their Annex B form.
    """

    stream_index: int
    pts: int
    dts: int
    keyframe: bool
    data: bytes
    nal_units: tuple[bytes, ...] = ()
    duration: int = 0  # in time_base ticks; 0 when the container does not say
