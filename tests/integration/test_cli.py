"""The streamd command as a user types it: probe and sdp."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from sdp import parse as parse_sdp

pytestmark = pytest.mark.integration


def streamd(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "streamd.cli", *args], capture_output=True, text=True, timeout=60
    )


def test_probe_explains_every_track(media_dir: Path) -> None:
    result = streamd("probe", str(media_dir / "bframes.mp4"))
    assert result.returncode == 0, result.stderr
    assert "track 0: video h264" in result.stdout and "B-frames" in result.stdout
    assert "streamed as 96 H264/90000" in result.stdout
    assert "streamed as 97 mpeg4-generic/48000/2" in result.stdout


def test_probe_says_why_a_track_is_left_out(media_dir: Path) -> None:
    result = streamd("probe", str(media_dir / "mpeg4-aac.mp4"))
    assert result.returncode == 0, result.stderr
    assert "not streamed: no RTP payload format for codec 'mpeg4'" in result.stdout


def test_probe_and_sdp_apply_the_config_path_settings(media_dir: Path, tmp_path: Path) -> None:
    config = tmp_path / "streamd.toml"
    config.write_text(f'media = "{media_dir}"\n[paths."mpeg4-*"]\nmode = "mpegts"\n')
    result = streamd("probe", str(media_dir / "mpeg4-aac.mp4"), "--config", str(config))
    assert result.returncode == 0, result.stderr
    assert "path settings for 'mpeg4-aac.mp4': mode=mpegts" in result.stdout
    assert "MP2T/90000" in result.stdout
    sdp = streamd("sdp", str(media_dir / "mpeg4-aac.mp4"), "--config", str(config))
    assert [m.media for m in parse_sdp(sdp.stdout).media] == ["video"] and "MP2T" in sdp.stdout
    other = streamd("probe", str(media_dir / "bframes.mp4"), "--config", str(config))
    assert "path settings" not in other.stdout


def test_probe_of_a_non_media_file_is_a_message(media_dir: Path) -> None:
    result = streamd("probe", str(media_dir / "notes.txt"))
    assert result.returncode == 1
    assert result.stderr.startswith("streamd: ") and "Traceback" not in result.stderr


def test_sdp_prints_what_describe_returns(media_dir: Path) -> None:
    result = streamd("sdp", str(media_dir / "bframes.mp4"))
    assert result.returncode == 0, result.stderr
    sd = parse_sdp(result.stdout)
    assert [m.media for m in sd.media] == ["video", "audio"]
    assert sd.get("control") == "*"


def test_bad_config_is_a_clear_error(tmp_path: Path) -> None:
    config = tmp_path / "streamd.toml"
    config.write_text("rtsp_port = 8554\nbogus = 1\n")
    result = streamd("serve", "--config", str(config))
    assert result.returncode == 2
    assert "unknown setting 'bogus'" in result.stderr
