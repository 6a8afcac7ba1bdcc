"""Encoders for frames made by a Python program: numpy pictures to H.264, numpy samples to AAC/Opus.

Sans-socket and sans-clock: the caller says when each frame was taken (ticks of the track clock),
and gets back access units ready for a live path. Tuned for live viewing, not for files:
libx264 with ``tune=zerolatency`` (no lookahead, no B-frames, so a frame comes out as soon as it
goes in), a keyframe about every second (a new viewer waits at most that long), and SPS/PPS both
in the extradata (so the SDP exists before the first frame) and in front of every keyframe.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import av
import numpy as np
from av.audio.fifo import AudioFifo

from media.aac import parse_audio_specific_config
from media.access_unit import AccessUnit
from media.errors import MediaError
from media.h264 import config_from_annexb
from media.h264_encoder import encode_h264
from media.track import Track

VIDEO_CLOCK = 90000
PIXEL_FORMATS = ("rgb24", "bgr24", "rgba", "bgra", "gray", "yuv420p")
AUDIO_CODECS = ("aac", "opus")
_AAC_RATES = (96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000)
_LAYOUTS = {1: "mono", 2: "stereo"}


class FrameClock:
    """Puts frames taken at irregular wall times on the regular ``1/fps`` grid players expect.

    A frame goes to the grid slot nearest the moment it was taken; jitter under half a frame
    interval therefore vanishes, and a late frame leaves a gap (as a dropped frame would). A frame
    may take the slot after the previous one even if that is up to one frame ahead of its time;
    further ahead it is refused (None), so a source faster than ``fps`` is thinned to ``fps``
    instead of running ever further ahead of the clock.
    """

    def __init__(self, fps: Fraction, clock_rate: int = VIDEO_CLOCK) -> None:
        self.fps = fps
        self.clock_rate = clock_rate
        self._last: int | None = None

    def ticks(self, seconds: float) -> int | None:
        """The timestamp (ticks) for a frame taken ``seconds`` after the start, or None to drop it."""
        slot = round(seconds * self.fps)
        if self._last is not None and slot <= self._last:
            if self._last + 1 > slot + 1:
                return None
            slot = self._last + 1
        self._last = slot
        return round(slot * self.clock_rate / self.fps)


class LiveVideoEncoder:
    """numpy frames (``height x width x 3`` RGB/BGR, or YUV 4:2:0 planes) to H.264 access units."""

    def __init__(
        self,
        width: int,
        height: int,
        fps: float,
        *,
        pixel_format: str = "rgb24",
        bit_rate: int | None = None,
        keyframe_interval: float = 1.0,
        preset: str = "veryfast",
        index: int = 0,
    ) -> None:
        if width <= 0 or height <= 0 or width % 2 or height % 2:
            raise ValueError(f"width and height must be positive and even (4:2:0), not {width}x{height}")
        if fps <= 0:
            raise ValueError(f"fps must be positive, not {fps}")
        if pixel_format not in PIXEL_FORMATS:
            raise ValueError(f"pixel_format must be one of {', '.join(PIXEL_FORMATS)}, not {pixel_format!r}")
        self.width, self.height, self.pixel_format = width, height, pixel_format
        self.frame_rate = Fraction(fps).limit_denominator(1001)
        encoder: Any = av.CodecContext.create("libx264", "w")
        encoder.width, encoder.height, encoder.pix_fmt = width, height, "yuv420p"
        encoder.time_base = Fraction(1, VIDEO_CLOCK)
        encoder.framerate = self.frame_rate
        encoder.gop_size = max(1, round(float(self.frame_rate) * keyframe_interval))
        encoder.max_b_frames = 0
        if bit_rate:
            encoder.bit_rate = bit_rate
        # global_header: SPS/PPS in the extradata at open (the SDP needs them before any frame);
        # repeat-headers: ...and in front of every keyframe too, for players that ignore the SDP's
        encoder.options = {
            "flags": "+global_header",
            "preset": preset,
            "tune": "zerolatency",
            "x264-params": "repeat-headers=1",
        }
        try:
            encoder.open()
        except (av.FFmpegError, ValueError) as exc:
            raise MediaError(f"cannot open the H.264 encoder (libx264): {exc}") from exc
        self._encoder = encoder
        config = config_from_annexb(bytes(encoder.extradata or b""))
        if not config.sps or not config.pps:
            raise MediaError("libx264 gave no SPS/PPS in its extradata")
        self.track = Track(
            index=index,
            kind="video",
            codec="h264",
            time_base=Fraction(1, VIDEO_CLOCK),
            width=width,
            height=height,
            frame_rate=self.frame_rate,
            extradata=bytes(encoder.extradata),
            config=config,
            pixel_format="yuv420p",
        )
        self._last_pts: int | None = None

    def check(self, frame: np.ndarray) -> None:
        """Raise ValueError unless ``frame`` has this encoder's shape (cheap: call it where frames arrive)."""
        expected = self._shape()
        if tuple(frame.shape) != expected or frame.dtype != np.uint8:
            raise ValueError(
                f"expected a uint8 array of shape {expected} ({self.pixel_format}), "
                f"got {frame.dtype} {tuple(frame.shape)}"
            )

    def encode(self, frame: np.ndarray, ticks: int) -> list[AccessUnit]:
        """One picture taken at ``ticks`` (90 kHz since the start) in; its access unit(s) out.

        Timestamps must grow: one not after the previous frame's is moved one tick past it.
        """
        self.check(frame)
        if self._last_pts is not None and ticks <= self._last_pts:
            ticks = self._last_pts + 1
        self._last_pts = ticks
        picture = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format=self.pixel_format)
        if self.pixel_format != "yuv420p":
            picture = picture.reformat(format="yuv420p")
        picture.pts = ticks
        picture.time_base = Fraction(1, VIDEO_CLOCK)
        return self._units(picture)

    def flush(self) -> list[AccessUnit]:
        return self._units(None)

    def _units(self, picture: Any) -> list[AccessUnit]:
        return encode_h264(self._encoder, picture, self.track.index)

    def _shape(self) -> tuple[int, ...]:
        if self.pixel_format == "gray":
            return (self.height, self.width)
        if self.pixel_format == "yuv420p":
            return (self.height * 3 // 2, self.width)
        return (self.height, self.width, 4 if self.pixel_format in ("rgba", "bgra") else 3)


class LiveAudioEncoder:
    """numpy samples (int16 or float in [-1, 1]; ``(n,)`` mono or ``(n, channels)``) to AAC or Opus.

    Timestamps count samples from the first chunk, whose position the caller gives: audio is
    continuous, so its own sample count is the best clock it has. Ticks are in the track clock
    (the sample rate for AAC, 48 kHz for Opus, as RFC 7587 wants).
    """

    def __init__(
        self,
        sample_rate: int = 48000,
        channels: int = 2,
        *,
        codec: str = "aac",
        bit_rate: int = 128_000,
        index: int = 1,
    ) -> None:
        if codec not in AUDIO_CODECS:
            raise ValueError(f"audio codec must be one of {', '.join(AUDIO_CODECS)}, not {codec!r}")
        if channels not in _LAYOUTS:
            raise ValueError(f"channels must be 1 or 2, not {channels}")
        if sample_rate <= 0:
            raise ValueError(f"sample_rate must be positive, not {sample_rate}")
        self.input_rate, self.channels, self.codec = sample_rate, channels, codec
        layout = _LAYOUTS[channels]
        rate = 48000 if codec == "opus" or sample_rate not in _AAC_RATES else sample_rate
        encoder: Any = av.CodecContext.create("libopus" if codec == "opus" else "aac", "w")
        encoder.sample_rate = rate
        encoder.layout = layout
        encoder.format = "flt" if codec == "opus" else "fltp"
        encoder.time_base = Fraction(1, rate)
        encoder.bit_rate = bit_rate
        try:
            encoder.open()
        except (av.FFmpegError, ValueError) as exc:
            raise MediaError(f"cannot open the {codec} encoder: {exc}") from exc
        self._encoder = encoder
        self.rate = rate
        self._resampler = av.AudioResampler(format=encoder.format.name, layout=layout, rate=rate)
        self._fifo = AudioFifo()
        self._next_pts: int | None = None
        extradata = bytes(encoder.extradata or b"")
        self.track = Track(
            index=index,
            kind="audio",
            codec=codec,
            time_base=Fraction(1, rate),
            sample_rate=rate,
            channels=channels,
            bit_rate=bit_rate,
            extradata=extradata,
            config=parse_audio_specific_config(extradata) if codec == "aac" else None,
        )

    def check(self, samples: np.ndarray) -> None:
        """Raise ValueError unless ``samples`` is a chunk this encoder takes."""
        shape = samples.shape
        fits = (samples.ndim == 1 and self.channels == 1) or (samples.ndim == 2 and shape[1] == self.channels)
        if not fits or not (samples.dtype == np.int16 or samples.dtype.kind == "f"):
            raise ValueError(
                f"expected int16 or float samples shaped (n, {self.channels})"
                + (" or (n,)" if self.channels == 1 else "")
                + f", got {samples.dtype} {shape}"
            )

    def encode(self, samples: np.ndarray, start_ticks: int = 0) -> list[AccessUnit]:
        """A chunk of any length in; the complete coded frames it finishes out.

        ``start_ticks`` (track clock) places the very first chunk; later ones follow on.
        """
        self.check(samples)
        if self._next_pts is None:
            self._next_pts = start_ticks
        if samples.dtype == np.int16:
            data, fmt = samples, "s16"
        else:
            data, fmt = samples.astype(np.float32, copy=False), "flt"
        frame = av.AudioFrame.from_ndarray(
            np.ascontiguousarray(data).reshape(1, -1), format=fmt, layout=_LAYOUTS[self.channels]
        )
        frame.sample_rate = self.input_rate
        for resampled in self._resampler.resample(frame):
            self._fifo.write(resampled)
        return self._drain(final=False)

    def flush(self) -> list[AccessUnit]:
        if self._next_pts is None:
            return []
        for resampled in self._resampler.resample(None):
            self._fifo.write(resampled)
        return self._drain(final=True)

    def _drain(self, *, final: bool) -> list[AccessUnit]:
        size = self._encoder.frame_size or 1024
        units: list[AccessUnit] = []
        while self._fifo.samples >= size or (final and self._fifo.samples):
            frame = self._fifo.read(min(size, self._fifo.samples))
            frame.pts = self._next_pts
            frame.time_base = Fraction(1, self.rate)
            self._next_pts = (self._next_pts or 0) + frame.samples
            units += self._units(frame)
        if final:
            units += self._units(None)
        return units

    def _units(self, frame: Any) -> list[AccessUnit]:
        try:
            packets = self._encoder.encode(frame)
        except (av.FFmpegError, ValueError) as exc:
            raise MediaError(f"{self.codec} encoder failed: {exc}") from exc
        return [
            AccessUnit(self.track.index, p.pts, p.pts, True, bytes(p), duration=p.duration or 0)
            for p in packets
            if p.pts is not None
        ]
