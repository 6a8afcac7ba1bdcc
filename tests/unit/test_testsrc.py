"""The built-in test stream: generated once, cached, 32 s of H.264 + AAC that loops seamlessly."""

from __future__ import annotations

import itertools
import os
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from media import digits, testsrc
from media.probe import probe
from media.reader import MediaReader
from media.track import AacConfig, H264Config
from tests.shared_files import made_once

CPU_SECONDS: list[float] = []  # what generating took, when this process did it


def _generate(cache: Path) -> None:
    begin = time.process_time()  # CPU time (all threads): what the encoding costs, not what load adds
    testsrc.ensure_test_stream(cache)
    CPU_SECONDS.append(time.process_time() - begin)


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, float | None]:
    """The stream generated into an empty cache, and its CPU seconds (None: another worker made it).

    Made once per run (``made_once``, the integration tests' ``test_stream_cache`` key): the
    encode costs seconds of CPU, and a parallel run would otherwise pay for it twice."""
    cache = made_once(tmp_path_factory, "testsrc", _generate)
    return testsrc.ensure_test_stream(cache), (CPU_SECONDS[0] if CPU_SECONDS else None)


def test_generated_quickly_into_versioned_name(generated: tuple[Path, float | None]) -> None:
    path, cpu_seconds = generated
    assert cpu_seconds is None or cpu_seconds < 30
    assert path.name == f"streamd-testsrc-v{testsrc.TESTSRC_VERSION}.mp4"
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temp file left behind


def test_second_call_returns_cached_file(
    generated: tuple[Path, float | None], monkeypatch: pytest.MonkeyPatch
) -> None:
    path, _ = generated
    mtime = path.stat().st_mtime_ns

    def encode(*args: object, **kwargs: object) -> None:
        raise AssertionError("the cached file was encoded again")

    monkeypatch.setattr(testsrc, "write_synthetic_media", encode)
    assert testsrc.ensure_test_stream(path.parent) == path
    assert path.stat().st_mtime_ns == mtime


def test_tracks(generated: tuple[Path, float | None]) -> None:
    info = probe(generated[0])
    video, audio = info.tracks
    assert (video.codec, video.width, video.height, video.frame_rate) == ("h264", 640, 360, Fraction(25))
    assert isinstance(video.config, H264Config) and video.config.sps
    assert (audio.codec, audio.sample_rate, audio.channels) == ("aac", 48000, 2)
    assert isinstance(audio.config, AacConfig)
    assert info.duration is not None and abs(info.duration - 32) <= Fraction(1, 10)
    assert video.duration == 32 and audio.duration == 32


def test_frames_and_keyframes(generated: tuple[Path, float | None]) -> None:
    with av.open(str(generated[0])) as container:
        pkts = [(p.stream.type, p.pts, p.is_keyframe) for p in container.demux() if p.size]
    video = [p for p in pkts if p[0] == "video"]
    audio = [p for p in pkts if p[0] == "audio"]
    assert len(video) == 800
    assert len(audio) == 1501  # 1500 frames of 1024 samples plus the encoder's priming frame
    keyframe_pts = sorted(p[1] for p in video if p[2])
    assert len(keyframe_pts) == 32  # one per second
    step = keyframe_pts[1] - keyframe_pts[0]
    assert all(b - a == step for a, b in itertools.pairwise(keyframe_pts))


def test_faststart(generated: tuple[Path, float | None]) -> None:
    head = generated[0].read_bytes()[:4096]
    assert 0 <= head.find(b"moov") < head.find(b"mdat") or b"mdat" not in head


def test_loops_without_a_seam(generated: tuple[Path, float | None]) -> None:
    path = generated[0]
    info = probe(path)
    with MediaReader(path, info, [0, 1], loop=True) as reader:
        units = reader.read_batch(Fraction(33), 10_000)
    audio = [u.pts for u in units if u.stream_index == 1 and u.pts >= 0]
    assert audio == [i * 1024 for i in range(len(audio))]  # continuous through the 32 s boundary
    # Reordered B-frames near the batch end may be missing; up to 32.5 s every frame is there once.
    video = sorted(u.pts for u in units if u.stream_index == 0 and u.pts < 12800 * 65 // 2)
    assert video == [i * 512 for i in range(len(video))]
    assert len(video) == 25 * 65 // 2 + 1


def test_default_cache_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert testsrc.default_cache_dir() == tmp_path / "streamd"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert testsrc.default_cache_dir() == tmp_path / "home" / ".cache" / "streamd"


def test_write_synthetic_media_small_variants(tmp_path: Path) -> None:
    path = tmp_path / "mono.mkv"
    testsrc.write_synthetic_media(path, seconds=Fraction(1, 2), sample_rate=44100, channels=1, video=False)
    info = probe(path)
    assert [(t.codec, t.sample_rate, t.channels) for t in info.tracks] == [("aac", 44100, 1)]
    with pytest.raises(ValueError):
        testsrc.write_synthetic_media(tmp_path / "x.mp4", video=False, audio=False)
    assert not os.path.exists(tmp_path / "x.mp4")


def test_seven_segment_glyphs() -> None:
    eight = digits.glyph("8", 20)
    one = digits.glyph("1", 20)
    assert eight.shape == (20, 10) and one.shape == (20, 10)
    assert eight.sum() > one.sum() > 0
    assert not one[:, :5].any()  # a "1" lights only the right-hand segments
    assert digits.text_mask("12:34.56", 20).shape[0] == 20
    plane = np.zeros((30, 200), dtype=np.uint8)
    digits.draw_text(plane, "00:12.34", 5, 5, 20, 235)
    assert set(np.unique(plane)) == {0, 235}
    digits.draw_text(plane, "99", 25, 190, 20, 235)  # clipped at the edges, no error
    with pytest.raises(ValueError):
        digits.glyph("x", 20)
