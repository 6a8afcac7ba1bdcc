"""RFC 6381 codec strings browsers are asked about, and the watch page that asks them."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from media.codec_string import av1_codec_string, hevc_codec_string, video_codec_string
from media.probe import probe
from streamd.http.listing import PathEntry
from streamd.http.pages import watch_page


def test_hevc_main_from_its_sps() -> None:
    # NAL header, VPS id / sub-layers, profile_tier_level of Main (compatibility flags 1 and 2),
    # constraints 0x90 (progressive, frame only), level 3.0, with emulation prevention bytes
    sps = bytes.fromhex("42010101600000030090000003000003005a")
    assert hevc_codec_string(sps) == "hvc1.1.6.L90.90"


def test_hevc_main10_high_tier() -> None:
    ptl = bytes([0x01, 0x22]) + bytes.fromhex("20000000") + bytes.fromhex("b00000000000") + bytes([153])
    assert hevc_codec_string(bytes.fromhex("4201") + ptl) == "hvc1.2.4.H153.B0"


def test_av1_from_av1c() -> None:
    assert av1_codec_string(bytes([0x81, 0x08, 0x0C, 0x00])) == "av01.0.08M.08"
    assert av1_codec_string(bytes([0x81, 0x2D, 0xC0, 0x00])) == "av01.1.13H.10"
    assert av1_codec_string(bytes([0x81, 0x48, 0x60, 0x00])) == "av01.2.08M.12"


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs the ffmpeg CLI")
@pytest.mark.parametrize(
    ("encoder", "prefix"), [("libx264", "avc1.64"), ("libx265", "hvc1.1.6.L"), ("libaom-av1", "av01.0.")]
)
def test_strings_of_real_files(tmp_path: Path, encoder: str, prefix: str) -> None:
    path = tmp_path / "v.mp4"
    subprocess.run(
        [
            *("ffmpeg", "-nostdin", "-loglevel", "quiet"),
            *("-f", "lavfi", "-i", "testsrc2=d=0.2:s=160x120:r=10"),
            *("-c:v", encoder, "-y", str(path)),
        ],
        check=True,
        timeout=120,
    )
    assert (video_codec_string(probe(path).tracks[0]) or "").startswith(prefix)


def _entry(codec: str) -> PathEntry:
    return PathEntry(
        "a b.mp4", "rtsp://h/a%20b.mp4", "/sdp/a", "/watch/a", "/mp4/a", "/files/a", 0, video_codec=codec
    )


def test_watch_page_lets_the_browser_choose_for_hevc() -> None:
    page = watch_page(_entry("hvc1.1.6.L90.90"), 2)
    assert 'data-codec="hvc1.1.6.L90.90"' in page and 'data-name="HEVC (H.265)"' in page
    assert 'data-converted="/mp4/a%20b.mp4?start=2&amp;video=h264"' in page
    assert '<noscript><video controls muted playsinline src="/mp4/a%20b.mp4?start=2&amp;video=h264">' in page
    assert "isTypeSupported" in page and "canPlayType" in page


def test_watch_page_of_h264_needs_no_script() -> None:
    page = watch_page(_entry("avc1.64001F"), 0)
    assert 'src="/mp4/a%20b.mp4"' in page and "video=h264" not in page
