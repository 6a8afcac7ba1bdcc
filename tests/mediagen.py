"""Small generated media files for tests (no binaries in the repository).

Every function writes to the path it is given and returns it, so tests can chain them with
``tmp_path`` / ``tmp_path_factory``. Defaults keep files tiny: 2 s of 320x240 at 25 fps.
"""

from __future__ import annotations

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
