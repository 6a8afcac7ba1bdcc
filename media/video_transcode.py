"""Video that a browser's WebRTC cannot decode (HEVC, H.264 with B-frames), made H.264 it can:
decoded with PyAV and encoded again by libx264 with zero-latency settings (no B-frames, no
lookahead, constrained baseline), parameter sets in front of every keyframe.

Timestamps stay in the source track's time base, so a reader's pacing and a presentation's
time bases need no change. Output comes in presentation order with DTS = PTS.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from fractions import Fraction
from typing import Any

import av

from media.access_unit import AccessUnit
from media.errors import MediaError
from media.h264 import config_from_annexb
from media.h264_encoder import encode_h264
from media.track import H264Config, H265Config, Track

START = b"\x00\x00\x00\x01"


class VideoToH264:
    """One video track in (access units in decode order), constrained-baseline H.264 out."""

    def __init__(self, source: Track, keyframe_interval: float = 1.0) -> None:
        if not source.width or not source.height:
            source = replace(source, **_size_from_parameter_sets(source))
        if not source.width or not source.height:
            raise MediaError(f"cannot convert {source.codec}: its picture size is unknown")
        self.source = source
        self._force_keyframe = False
        # pictures outside [from_pts, until_pts) are decoded but not encoded (a file's chunk)
        self.from_pts: int | None = None
        self.until_pts: int | None = None
        self.width, self.height = source.width - source.width % 2, source.height - source.height % 2
        self.keyframe_interval = keyframe_interval
        self._parameter_sets = _annexb(_parameter_sets(source))
        self._open()
        extradata = bytes(self._encoder.extradata or b"")
        config = config_from_annexb(extradata)
        if not config.sps or not config.pps:
            raise MediaError("libx264 gave no SPS/PPS")
        self.track = replace(
            source,
            codec="h264",
            config=config,
            extradata=extradata,
            has_b_frames=False,
            profile="Constrained Baseline",
            pixel_format="yuv420p",
            width=self.width,
            height=self.height,
        )

    def _open(self) -> None:
        try:
            self._decoder: Any = av.CodecContext.create(self.source.codec, "r")
            encoder: Any = av.CodecContext.create("libx264", "w")
            encoder.width, encoder.height, encoder.pix_fmt = self.width, self.height, "yuv420p"
            encoder.time_base = self.source.time_base
            rate = self.source.frame_rate or Fraction(25)
            encoder.framerate = rate
            encoder.gop_size = max(1, round(float(rate) * self.keyframe_interval))
            encoder.max_b_frames = 0
            encoder.options = {
                "flags": "+global_header",
                "preset": "veryfast",
                "tune": "zerolatency",
                "profile": "baseline",
                "x264-params": "repeat-headers=1",
            }
            encoder.open()
        except (av.FFmpegError, ValueError) as exc:
            raise MediaError(f"cannot convert {self.source.codec} to H.264: {exc}") from exc
        self._encoder = encoder
        self._last_pts: int | None = None

    def force_keyframe(self) -> None:
        """The next picture out is a keyframe (a viewer lost pictures, or just joined)."""
        self._force_keyframe = True

    def reset(self) -> None:
        """After a seek: nothing buffered is wanted, timestamps may go back."""
        self._open()

    def feed(self, au: AccessUnit) -> list[AccessUnit]:
        data = au.data
        if au.keyframe and self._parameter_sets and not data.startswith(self._parameter_sets):
            data = self._parameter_sets + data
        packet = av.Packet(data)
        packet.pts, packet.dts, packet.time_base = au.pts, au.dts, self.source.time_base
        try:
            frames = self._decoder.decode(packet)
        except (av.FFmpegError, ValueError):
            return []  # a damaged picture: the next keyframe recovers
        return self._encode(frames)

    def flush(self) -> list[AccessUnit]:
        try:
            frames = self._decoder.decode(None)
        except (av.FFmpegError, ValueError):
            frames = []
        return self._encode(frames) + self._packets(None)

    def _encode(self, frames: Iterable[Any]) -> list[AccessUnit]:
        out: list[AccessUnit] = []
        for frame in frames:
            if frame.pts is None or (self._last_pts is not None and frame.pts <= self._last_pts):
                continue  # the encoder needs growing timestamps
            if (self.from_pts is not None and frame.pts < self.from_pts) or (
                self.until_pts is not None and frame.pts >= self.until_pts
            ):
                continue
            self._last_pts = frame.pts
            picture = frame.reformat(width=self.width, height=self.height, format="yuv420p")
            picture.pts, picture.time_base = frame.pts, self.source.time_base
            keyframe, self._force_keyframe = self._force_keyframe, False
            picture.pict_type = av.video.frame.PictureType.I if keyframe else av.video.frame.PictureType.NONE
            out += self._packets(picture)
        return out

    def _packets(self, picture: Any) -> list[AccessUnit]:
        return encode_h264(self._encoder, picture, self.source.index)


# the start of an IDR slice (first_mb 0, slice_type 7 = I, PPS 0): FFmpeg's H.264 parser sets the
# picture size from the SPS once a slice refers to it, and parameter sets alone are not enough
IDR_SLICE_START = b"\x65\x88\x84\x00"
ACCESS_UNIT_DELIMITER = b"\x09\xf0"  # ends the parser's access unit


def _size_from_parameter_sets(track: Track) -> dict[str, int]:
    """Width and height from a live track's parameter sets (FFmpeg's HEVC decoder reads Annex B
    extradata when it opens; its H.264 decoder does not, but its parser does, given a slice)."""
    nals = _parameter_sets(track)
    if not nals:
        return {}
    try:
        decoder: Any = av.CodecContext.create(track.codec, "r")
        if track.codec == "h264":
            decoder.parse(_annexb((*nals, IDR_SLICE_START)))
            decoder.parse(_annexb((ACCESS_UNIT_DELIMITER,)))
        else:
            decoder.extradata = _annexb(nals)
            decoder.open()
    except (av.FFmpegError, ValueError):
        return {}
    return {"width": decoder.width, "height": decoder.height} if decoder.width and decoder.height else {}


def _parameter_sets(track: Track) -> tuple[bytes, ...]:
    config = track.config
    if isinstance(config, H265Config):
        return (*config.vps, *config.sps, *config.pps)
    if isinstance(config, H264Config):
        return (*config.sps, *config.pps)
    return ()


def _annexb(nals: tuple[bytes, ...]) -> bytes:
    return b"".join(START + n for n in nals)
