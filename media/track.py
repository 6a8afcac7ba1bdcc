"""What a media file holds, track by track: the facts the RTP and SDP layers need."""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction


@dataclass(frozen=True, slots=True)
class H264Config:
    """Parameter sets of an H.264 track, from avcC or Annex B extradata (or the first keyframe)."""

    sps: tuple[bytes, ...]
    pps: tuple[bytes, ...]
    nal_length_size: int | None  # 1, 2 or 4 for avcC (length-prefixed) input; None for Annex B


@dataclass(frozen=True, slots=True)
class AacConfig:
    """An AAC track's AudioSpecificConfig (ISO 14496-3 1.6.2.1) and what it says."""

    audio_specific_config: bytes
    object_type: int
    sample_rate: int  # the core sampling rate
    channels: int
    extension_sample_rate: int | None = None  # SBR/HE-AAC output rate, when signalled
    adts_input: bool = False  # packets in the file carry ADTS headers that must be stripped


@dataclass(frozen=True, slots=True)
class H265Config:
    """Parameter sets of an H.265 track, from hvcC or Annex B extradata (or the first keyframe)."""

    vps: tuple[bytes, ...]
    sps: tuple[bytes, ...]
    pps: tuple[bytes, ...]
    nal_length_size: int | None  # 1, 2 or 4 for hvcC (length-prefixed) input; None for Annex B


CodecConfig = H264Config | AacConfig | H265Config


@dataclass(frozen=True, slots=True)
class Track:
    """One elementary stream of a file.

    ``index`` is the container's stream index; ``time_base`` is the unit of every PTS/DTS the
    reader yields for this track. ``config`` is None when the codec needs none or it is unknown.
    """

    index: int
    kind: str  # "video" | "audio" | "subtitle" | "data"
    codec: str  # FFmpeg codec name, e.g. "h264", "aac"
    time_base: Fraction
    duration: Fraction | None = None  # seconds
    start_time: Fraction | None = None  # seconds, the first PTS
    bit_rate: int | None = None
    width: int | None = None
    height: int | None = None
    frame_rate: Fraction | None = None
    sample_rate: int | None = None
    channels: int | None = None
    language: str | None = None
    extradata: bytes = b""
    config: CodecConfig | None = None
    profile: str | None = None
    has_b_frames: bool = False
    pixel_format: str | None = None  # FFmpeg's name for video, e.g. "yuvj420p" (MJPEG needs to know)
    notes: tuple[str, ...] = field(default=())  # human-readable remarks from probing


@dataclass(frozen=True, slots=True)
class MediaInfo:
    """A probed file: container facts plus its tracks, in stream-index order."""

    path: str
    format_name: str
    duration: Fraction | None  # seconds; None when unknown (live or broken index)
    size: int
    mtime_ns: int
    tracks: tuple[Track, ...]

    def track(self, index: int) -> Track:
        for t in self.tracks:
            if t.index == index:
                return t
        raise KeyError(index)
