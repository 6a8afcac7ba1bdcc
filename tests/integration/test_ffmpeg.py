"""ffmpeg and ffprobe (Debian's 5.1) against the real server: probing, bit-exact copies, pacing."""

from __future__ import annotations

import json
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.integration.codec_matrix import record
from tests.integration.conftest import BFRAMES_SECONDS, ServerProcess, need
from tests.integration.source import ffmpeg_copy as copy_streams
from tests.integration.source import (
    received_audio_frames,
    received_video_nals,
    source_audio_frames,
    source_video_nals,
)

pytestmark = pytest.mark.integration


def ffprobe(url: str, transport: str) -> dict:
    need("ffprobe")
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-rtsp_transport", transport, "-show_streams", "-of", "json", url],
        capture_output=True,
        timeout=60,
        check=True,
    )
    return json.loads(out.stdout)


def ffmpeg_copy(url: str, transport: str, out_dir: Path, name: str) -> tuple[Path, Path, float]:
    """Receive a presentation with ``-c copy``: raw Annex B video and ADTS audio, as sent."""
    need("ffmpeg")
    video, audio = out_dir / f"{name}.h264", out_dir / f"{name}.aac"
    started = time.monotonic()
    copy_streams(["-rtsp_transport", transport, "-i", url], video, audio, timeout=120)
    return video, audio, time.monotonic() - started


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_ffprobe_sees_both_tracks(server: ServerProcess, transport: str) -> None:
    streams = ffprobe(server.url("bframes.mp4"), transport)["streams"]
    assert sorted(s["codec_name"] for s in streams) == ["aac", "h264"]
    video = next(s for s in streams if s["codec_type"] == "video")
    assert (video["width"], video["height"]) == (320, 240)


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_ffprobe_test_stream(server: ServerProcess, transport: str) -> None:
    streams = ffprobe(server.url("test"), transport)["streams"]
    assert sorted(s["codec_name"] for s in streams) == ["aac", "h264"]


@pytest.mark.serial  # asserts ffmpeg took about the media's duration
def test_ffmpeg_copy_is_bit_exact_with_bframes_and_paced(server: ServerProcess, tmp_path: Path) -> None:
    source = server.media / "bframes.mp4"
    video, audio, elapsed = ffmpeg_copy(server.url("bframes.mp4"), "tcp", tmp_path, "bframes")
    # paced in real time: the clip is neither a burst nor slow. ffmpeg's start-up adds a little; the
    # upper bound is generous: a loaded machine may be late, never early (the pacer's unit tests are exact)
    assert BFRAMES_SECONDS - 0.5 <= elapsed <= BFRAMES_SECONDS + 4, elapsed
    expected = source_video_nals(source)
    got = received_video_nals(video)
    assert len(got) == len(expected)
    assert got == expected
    assert received_audio_frames(audio) == source_audio_frames(source)  # priming frames included
    record("h264", "ffmpeg", "tcp", "bit-exact")
    record("aac", "ffmpeg", "tcp", "bit-exact")


@pytest.mark.parametrize("name", ["sub%20dir/moov%20end.mp4", "raw.h264"])
def test_ffmpeg_copy_other_layouts(server: ServerProcess, tmp_path: Path, name: str) -> None:
    """moov at the end of the file, and raw Annex B input, arrive intact too."""
    source = server.media / name.replace("%20", " ")
    need("ffmpeg")
    out = tmp_path / "v.h264"
    subprocess.run(
        [
            "ffmpeg",
            "-nostdin",
            "-loglevel",
            "error",
            "-rtsp_transport",
            "tcp",
            "-i",
            server.url(name),
            "-map",
            "0:v",
            "-c",
            "copy",
            "-f",
            "h264",
            "-y",
            str(out),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    assert received_video_nals(out) == source_video_nals(source)


def test_two_clients_at_once_both_complete(server: ServerProcess, tmp_path: Path) -> None:
    source = server.media / "bframes.mp4"
    expected_video, expected_audio = source_video_nals(source), source_audio_frames(source)
    with ThreadPoolExecutor(2) as pool:
        results = list(
            pool.map(
                lambda i: ffmpeg_copy(server.url("bframes.mp4"), ["tcp", "udp"][i], tmp_path, f"c{i}"), [0, 1]
            )
        )
    for video, audio, _ in results:
        assert received_video_nals(video) == expected_video
        assert received_audio_frames(audio) == expected_audio
    record("h264", "ffmpeg", "udp", "bit-exact")
    record("aac", "ffmpeg", "udp", "bit-exact")
