"""Small generated media files for tests (no binaries in the repository).

Every function writes to the path it is given and returns it, so tests can chain them with
``tmp_path`` / ``tmp_path_factory``. Defaults keep files tiny: 2 s of 320x240 at 25 fps.
"""

from __future__ import annotations

import subprocess
from fractions import Fraction
from pathlib import Path

from media.testsrc import write_synthetic_media


def make_h264_aac_mp4(
    path: Path,
    seconds: float | Fraction = 2,
    bframes: bool = True,
    faststart: bool = False,
    size: tuple[int, int] = (320, 240),
    fps: int = 25,
    sample_rate: int = 48000,
    channels: int = 2,
    gop: int | None = None,
) -> Path:
    """H.264 (libx264, avcC) + AAC in MP4. Without ``faststart`` the moov atom is at the end."""
    write_synthetic_media(
        path,
        seconds=seconds,
        size=size,
        fps=fps,
        gop=gop,
        bframes=bframes,
        sample_rate=sample_rate,
        channels=channels,
        container_format="mp4",
        faststart=faststart,
    )
    return path


def make_moov_at_end_mp4(path: Path, **kwargs: object) -> Path:
    """An MP4 whose moov atom follows mdat (what muxers write unless asked for faststart)."""
    return make_h264_aac_mp4(path, faststart=False, **kwargs)  # type: ignore[arg-type]


def make_mkv(path: Path, seconds: float | Fraction = 2, bframes: bool = True, fps: int = 25) -> Path:
    """H.264 + AAC in Matroska (millisecond time base)."""
    write_synthetic_media(path, seconds=seconds, fps=fps, bframes=bframes, container_format="matroska")
    return path


def make_ts(path: Path, seconds: float | Fraction = 2, bframes: bool = True, fps: int = 25) -> Path:
    """H.264 (Annex B) + AAC (ADTS) in MPEG-TS."""
    write_synthetic_media(path, seconds=seconds, fps=fps, bframes=bframes, container_format="mpegts")
    return path


def make_annexb_h264(
    path: Path,
    seconds: float | Fraction = 2,
    bframes: bool = True,
    size: tuple[int, int] = (320, 240),
    fps: int = 25,
    gop: int | None = None,
) -> Path:
    """A raw Annex B H.264 elementary stream (.h264): no timestamps, no container."""
    write_synthetic_media(
        path,
        seconds=seconds,
        size=size,
        fps=fps,
        gop=gop,
        bframes=bframes,
        audio=False,
        container_format="h264",
    )
    return path


def make_adts_aac(
    path: Path, seconds: float | Fraction = 2, sample_rate: int = 48000, channels: int = 2
) -> Path:
    """A raw AAC stream with ADTS headers (.aac)."""
    write_synthetic_media(
        path,
        seconds=seconds,
        sample_rate=sample_rate,
        channels=channels,
        video=False,
        container_format="adts",
    )
    return path


def make_truncated(path_in: Path, path_out: Path, fraction: float) -> Path:
    """Copy the first ``fraction`` of ``path_in``'s bytes, as an interrupted download would."""
    data = Path(path_in).read_bytes()
    Path(path_out).write_bytes(data[: int(len(data) * fraction)])
    return path_out


def make_with_ffmpeg(
    path: Path,
    *codec_args: str,
    seconds: float = 1,
    size: tuple[int, int] = (160, 120),
    fps: int = 10,
    video: bool = True,
    audio_tracks: int = 0,
    container_format: str | None = None,
) -> Path:
    """Encode lavfi test sources with the ffmpeg CLI: ``codec_args`` pick codecs and options.

    ``audio_tracks`` sine sources (440 Hz, 660 Hz, ...) follow the video, each its own stream, so
    codec_args can address them as ``-c:a``, ``-metadata:s:a:1`` and so on.
    """
    import subprocess

    inputs: list[str] = []
    maps: list[str] = []
    if video:
        inputs += ["-f", "lavfi", "-i", f"testsrc2=d={seconds}:s={size[0]}x{size[1]}:r={fps}"]
        maps += ["-map", "0:v"]
    for i in range(audio_tracks):
        inputs += ["-f", "lavfi", "-i", f"sine=f={440 + 220 * i}:d={seconds}"]
        maps += ["-map", f"{len(maps) // 2}:a"]
    fmt = ["-f", container_format] if container_format else []
    subprocess.run(
        ["ffmpeg", "-nostdin", "-loglevel", "error", *inputs, *maps, *codec_args, *fmt, "-y", str(path)],
        check=True,
        timeout=120,
    )
    return path


def make_audio(
    path: Path,
    codec: str,
    seconds: float = 1,
    sample_rate: int = 48000,
    channels: int = 2,
    bit_rate: int | None = None,
    container_format: str | None = None,
    muxer_options: dict[str, str] | None = None,
) -> Path:
    """One audio track encoded by PyAV's ``codec`` (e.g. ``libopus``, ``pcm_mulaw``, ``ac3``).

    The signal is a tone per channel (440 Hz, 550 Hz, ...) at half scale, so lossy codecs have
    something to code and a wrong channel order or byte order shows up in decoded samples. The
    container follows the file extension unless ``container_format`` names one; ``muxer_options``
    go to the muxer (``{"write_xing": "0"}``: an MP3 without the LAME tag and its gapless info).
    """
    import av
    import numpy as np

    layout = {1: "mono", 2: "stereo", 6: "5.1"}.get(channels, f"{channels}c")
    with av.open(str(path), "w", format=container_format, options=muxer_options or {}) as container:
        stream = container.add_stream(codec, rate=sample_rate, layout=layout)
        if bit_rate:
            stream.codec_context.bit_rate = bit_rate
        sample_format = stream.codec_context.codec.audio_formats[0].name
        stream.codec_context.format = sample_format
        stream.codec_context.open()
        chunk = stream.codec_context.frame_size or 1024
        total = round(seconds * sample_rate)
        pitches = 440.0 + 110.0 * np.arange(channels)[:, None]
        for start in range(0, total, chunk):
            n = min(chunk, total - start)
            t = (start + np.arange(n)) / sample_rate
            tone = 0.5 * np.sin(2 * np.pi * pitches * t)
            frame = av.AudioFrame.from_ndarray(
                _as_sample_format(tone, sample_format), format=sample_format, layout=layout
            )
            frame.sample_rate, frame.pts = sample_rate, start
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def _as_sample_format(tone: object, sample_format: str) -> object:
    """Float samples in [-1, 1] (channels x samples) as the array ``AudioFrame.from_ndarray`` wants."""
    import numpy as np

    samples = np.asarray(tone)
    planar = sample_format.endswith("p")
    kind = sample_format.rstrip("p")
    if kind == "s16":
        samples = np.round(samples * 32767).astype(np.int16)
    elif kind == "s32":
        samples = np.round(samples * 2147483647).astype(np.int32)
    else:
        samples = samples.astype(np.float32 if kind == "flt" else np.float64)
    return samples if planar else samples.T.reshape(1, -1)


def make_live_clip(path: Path, seconds: int = 12) -> Path:
    """What the live-path tests publish: 320x240 25 fps H.264 from ffmpeg's own libx264 (a
    keyframe every second, no B-frames) + AAC, so a reader joining late soon gets a keyframe."""
    subprocess.run(
        ["ffmpeg", "-nostdin", "-loglevel", "error",
         "-f", "lavfi", "-i", f"testsrc=d={seconds}:s=320x240:r=25", "-f", "lavfi", "-i", f"sine=d={seconds}",
         "-c:v", "libx264", "-g", "25", "-bf", "0", "-c:a", "aac",
         "-y", str(path)],
        check=True, timeout=60,
    )  # fmt: skip
    return path
