"""Precise pacing end to end: a server with ``--precise-pacing`` (the sub-millisecond pacer that
sleeps on the loop) still delivers every frame bit-exact to ffmpeg, over UDP and TCP, in real
time. The timing itself is unit-tested on a fake clock (``tests/unit/test_pacer.py``)."""

from __future__ import annotations

import time
from collections.abc import Iterator
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


@pytest.fixture(scope="module")
def precise(media_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    proc = start_server(media_dir, tmp_path_factory.mktemp("precise"), "--precise-pacing")
    yield proc
    stop_all(proc)


@pytest.mark.serial  # asserts ffmpeg took about the media's duration
@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_precise_pacing_is_bit_exact_and_real_time(
    precise: ServerProcess, transport: str, tmp_path: Path
) -> None:
    need("ffmpeg")
    source = precise.media / "bframes.mp4"
    video, audio = tmp_path / "v.h264", tmp_path / "a.aac"
    started = time.monotonic()
    ffmpeg_copy(["-rtsp_transport", transport, "-i", precise.url("bframes.mp4")], video, audio, timeout=120)
    elapsed = time.monotonic() - started
    assert BFRAMES_SECONDS - 0.5 <= elapsed <= BFRAMES_SECONDS + 4, elapsed  # late under load, never early
    assert received_video_nals(video) == source_video_nals(source)
    assert received_audio_frames(audio) == source_audio_frames(source)
