"""Precise pacing end to end: a server with ``--precise-pacing`` (the sub-millisecond pacer that
sleeps on the loop) still delivers every frame bit-exact to ffmpeg, over UDP and TCP, in real
time. The timing itself is unit-tested on a fake clock (``tests/unit/test_pacer.py``)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.integration.conftest import BFRAMES_SECONDS, ServerProcess, need, start_server, stop_all
from tests.integration.source import (
    ffmpeg_copy,
    received_audio_frames,
    received_video_nals,
    source_audio_frames,
    source_video_nals,
)

pytestmark = pytest.mark.integration

TRANSPORTS = ("udp", "tcp")


@pytest.fixture(scope="module")
def precise(media_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    proc = start_server(media_dir, tmp_path_factory.mktemp("precise"), "--precise-pacing")
    yield proc
    stop_all(proc)


@pytest.mark.serial  # asserts ffmpeg took about the media's duration
def test_precise_pacing_is_bit_exact_and_real_time(precise: ServerProcess, tmp_path: Path) -> None:
    """ffmpeg over UDP and over TCP at once (two sessions of one pacer), each in real time."""
    need("ffmpeg")
    source = precise.media / "bframes.mp4"

    def play(transport: str) -> tuple[float, Path, Path]:
        video, audio = tmp_path / f"{transport}.h264", tmp_path / f"{transport}.aac"
        started = time.monotonic()
        ffmpeg_copy(
            ["-rtsp_transport", transport, "-i", precise.url("bframes.mp4")], video, audio, timeout=120
        )
        return time.monotonic() - started, video, audio

    with ThreadPoolExecutor(2) as pool:
        results = dict(zip(TRANSPORTS, pool.map(play, TRANSPORTS), strict=True))
    for transport, (elapsed, video, audio) in results.items():
        # late under load, never early
        assert BFRAMES_SECONDS - 0.5 <= elapsed <= BFRAMES_SECONDS + 4, (transport, elapsed)
        assert received_video_nals(video) == source_video_nals(source), transport
        assert received_audio_frames(audio) == source_audio_frames(source), transport
