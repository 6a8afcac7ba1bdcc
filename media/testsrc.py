"""The built-in test stream: synthetic H.264 + AAC made with PyAV, cached on disk.

It is served as ``rtsp://host:8554/test`` so a fresh install has something to play. The picture
shows scrolling colour bars, a running clock and a white flash on every full second; the sound is
a quiet 440 Hz tone with a 1 kHz beep on every full second. Flash and beep together make A/V sync
visible and audible. 32 s is a whole number of video frames (800 at 25 fps) *and* of AAC frames
(1500 x 1024 samples at 48 kHz), so the file loops without a seam.

``write_synthetic_media`` is the general generator; tests use it for small files of any shape.
"""

from __future__ import annotations

import contextlib
import math
import os
import tempfile
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from media.digits import draw_text
from media.errors import MediaError

TESTSRC_VERSION = 1
TESTSRC_SECONDS = 32
TESTSRC_SIZE = (640, 360)
TESTSRC_FPS = 25
TESTSRC_SAMPLE_RATE = 48000
AAC_FRAME_SAMPLES = 1024

# (Y, U, V) of 75 % colour bars: white, yellow, cyan, green, magenta, red, blue, black.
_BARS_YUV = (
    (180, 128, 128),
    (162, 44, 142),
    (131, 156, 44),
    (112, 72, 58),
    (84, 184, 198),
    (65, 100, 212),
    (35, 212, 114),
    (16, 128, 128),
)


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/streamd``, or ``~/.cache/streamd``."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "streamd"


def ensure_test_stream(cache_dir: Path | None = None) -> Path:
    """Return the path of the cached test stream, generating it first if needed.

    The file name carries ``TESTSRC_VERSION`` so a changed generator never serves a stale file.
    It is written to a temporary file and renamed, so concurrent callers and crashes never leave
    a half-written file under the final name.
    """
    directory = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    target = directory / f"streamd-testsrc-v{TESTSRC_VERSION}.mp4"
    if target.is_file() and target.stat().st_size > 0:
        return target
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=".testsrc-", suffix=".mp4", dir=directory)
        os.close(fd)
    except OSError as exc:
        raise MediaError(f"cannot create the test stream cache in {directory}: {exc}") from exc
    try:
        write_synthetic_media(
            tmp_name,
            seconds=TESTSRC_SECONDS,
            size=TESTSRC_SIZE,
            fps=TESTSRC_FPS,
            gop=TESTSRC_FPS,
            bframes=True,
            sample_rate=TESTSRC_SAMPLE_RATE,
            channels=2,
            container_format="mp4",
            faststart=True,
        )
        os.chmod(tmp_name, 0o644)
        os.replace(tmp_name, target)
    except (av.FFmpegError, OSError) as exc:
        raise MediaError(f"cannot generate the test stream in {directory}: {exc}") from exc
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
    return target


def write_synthetic_media(
    path: str | os.PathLike[str],
    *,
    seconds: float | Fraction = 2,
    size: tuple[int, int] = (320, 240),
    fps: int = 25,
    gop: int | None = None,
    bframes: bool = True,
    video_bit_rate: int = 800_000,
    sample_rate: int = 48000,
    channels: int = 2,
    video: bool = True,
    audio: bool = True,
    container_format: str | None = None,
    faststart: bool = False,
) -> None:
    """Encode synthetic H.264 (libx264) and/or AAC into ``path`` in any container PyAV writes.

    ``container_format`` is an FFmpeg muxer name (``mp4``, ``matroska``, ``mpegts``, ``h264`` for
    raw Annex B, ``adts`` for raw AAC); None guesses from the file extension.
    """
    if not (video or audio):
        raise ValueError("nothing to write: neither video nor audio")
    width, height = size
    if width % 2 or height % 2:
        raise ValueError("width and height must be even for yuv420p")
    gop = gop or fps
    n_frames = round(Fraction(seconds) * fps)
    n_samples = round(Fraction(seconds) * sample_rate)
    options = {"movflags": "+faststart"} if faststart else {}
    with av.open(str(path), "w", format=container_format, options=options) as out:
        vstream = astream = None
        if video:
            vstream = out.add_stream("libx264", rate=fps)
            vstream.width, vstream.height = width, height
            vstream.pix_fmt = "yuv420p"
            vstream.bit_rate = video_bit_rate
            vstream.codec_context.options = {
                "preset": "veryfast",
                "profile": "main" if bframes else "baseline",
                "x264-params": f"keyint={gop}:min-keyint={gop}:scenecut=0:bframes={2 if bframes else 0}",
            }
        if audio:
            astream = out.add_stream("aac", rate=sample_rate, layout="stereo" if channels == 2 else "mono")
            if channels not in (1, 2):
                raise ValueError("channels must be 1 or 2")
            astream.bit_rate = 64_000 * channels

        audio_frames = _audio_frames(n_samples, sample_rate, channels) if astream else iter(())
        next_audio = next(audio_frames, None)
        for i in range(n_frames if vstream else 0):
            while next_audio is not None and next_audio.pts * fps <= i * sample_rate:
                out.mux(astream.encode(next_audio))
                next_audio = next(audio_frames, None)
            frame = av.VideoFrame.from_ndarray(_picture(i, fps, width, height), format="yuv420p")
            frame.pts = i
            frame.time_base = Fraction(1, fps)
            out.mux(vstream.encode(frame))
        while next_audio is not None:
            out.mux(astream.encode(next_audio))
            next_audio = next(audio_frames, None)
        if vstream:
            out.mux(vstream.encode(None))
        if astream:
            out.mux(astream.encode(None))


def _audio_frames(n_samples: int, rate: int, channels: int) -> Iterator[av.AudioFrame]:
    """Planar float frames of 1024 samples (the last one may be shorter)."""
    layout = "stereo" if channels == 2 else "mono"
    for start in range(0, n_samples, AAC_FRAME_SAMPLES):
        count = min(AAC_FRAME_SAMPLES, n_samples - start)
        samples = _sound(start, count, rate)
        frame = av.AudioFrame.from_ndarray(
            np.ascontiguousarray(np.broadcast_to(samples, (channels, count))), format="fltp", layout=layout
        )
        frame.sample_rate = rate
        frame.pts = start
        frame.time_base = Fraction(1, rate)
        yield frame


def _sound(start: int, count: int, rate: int) -> np.ndarray:
    """A quiet 440 Hz tone plus a 100 ms 1 kHz beep at the start of each second."""
    n = np.arange(start, start + count)
    t = n / rate
    tone = 0.1 * np.sin(2 * math.pi * 440 * t)
    beep = np.where((n % rate) < rate // 10, 0.5 * np.sin(2 * math.pi * 1000 * t), 0.0)
    return (tone + beep).astype(np.float32)


def _picture(index: int, fps: int, width: int, height: int) -> np.ndarray:
    """Frame ``index`` as a (height * 3 / 2, width) yuv420p array."""
    y = np.empty((height, width), dtype=np.uint8)
    u = np.empty((height // 2, width // 2), dtype=np.uint8)
    v = np.empty((height // 2, width // 2), dtype=np.uint8)
    bars_h = height * 2 // 3
    bar_w = max(2, (width // len(_BARS_YUV)) & ~1)
    shift = (index * 4) % (bar_w * len(_BARS_YUV))
    cols = ((np.arange(width) + shift) // bar_w) % len(_BARS_YUV)
    table = np.array(_BARS_YUV, dtype=np.uint8)
    y[:bars_h] = table[cols, 0]
    u[: bars_h // 2] = table[cols[::2], 1]
    v[: bars_h // 2] = table[cols[::2], 2]
    # Lower third: dark grey band with a luma ramp moving the other way, and the clock.
    ramp = ((np.arange(width) - index * 2) % 320 // 4 + 24).astype(np.uint8)  # 800 * 2 % 320 == 0
    y[bars_h:] = ramp
    u[bars_h // 2 :] = 128
    v[bars_h // 2 :] = 128
    centis = index * 100 // fps
    clock = f"{centis // 6000:02d}:{centis // 100 % 60:02d}.{centis % 100:02d}"
    digit_h = max(10, (height - bars_h) * 5 // 8)
    top = bars_h + (height - bars_h - digit_h) // 2
    draw_text(y, clock, top, width // 16, digit_h, 235)
    draw_text(y, f"{index % 10000:04d}", top, width * 11 // 16, digit_h // 2, 235)
    if index % fps < 3:  # flash with the beep
        box = max(4, height // 8) & ~1
        y[:box, width - box :] = 235
        u[: box // 2, (width - box) // 2 :] = 128
        v[: box // 2, (width - box) // 2 :] = 128
    return np.concatenate((y.ravel(), u.ravel(), v.ravel())).reshape(height * 3 // 2, width)
