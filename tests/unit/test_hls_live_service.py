"""The live HLS streams of a server without sockets: one stream per path made on demand and let go
when idle, blocked requests bounded and all answered when the path goes offline."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

import pytest

from streamd.config import ConfigError, PathSettings, ServerConfig
from streamd.hls.live_segmenter import SegmenterSettings
from streamd.hls.live_service import LiveHls, from_config
from streamd.rtsp.errors import RtspError
from tests.mediagen import make_h264_aac_mp4
from tests.unit.test_recorder import as_live


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_h264_aac_mp4(
        tmp_path_factory.mktemp("hls-service") / "src.mp4", seconds=3, gop=25, bframes=False
    )


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_one_stream_per_path_let_go_when_idle(source: Path) -> None:
    live, units = as_live(source)
    viewers: Counter[str] = Counter()
    clock = Clock()
    hls = LiveHls({live.name: live}, viewers, SegmenterSettings(), idle_seconds=30, clock=clock)
    with pytest.raises(RtspError) as offline:
        hls.entry("live/other")
    assert offline.value.status == 404
    entry = hls.entry(live.name)
    assert hls.entry(live.name) is entry and viewers[live.name] == 1  # shared by every viewer
    assert entry.stream.on_unit in live.unit_listeners
    for au in units:
        live.push_unit(au.stream_index, au)
    assert entry.version > 0 and entry.stream.segmenter.last_complete >= 1
    clock.now = 31
    hls.sweep()
    assert live.name not in hls.entries and not viewers and not live.unit_listeners
    await hls.close()


async def test_blocked_requests_are_bounded_and_answered_when_the_path_goes_offline(source: Path) -> None:
    live, units = as_live(source)
    hls = LiveHls({live.name: live}, Counter(), SegmenterSettings(), max_blocked=3)
    entry = hls.entry(live.name)
    for au in units[:40]:
        live.push_unit(au.stream_index, au)
    never = lambda: False  # noqa: E731
    waiters = [asyncio.ensure_future(hls.wait(entry, never, 60)) for _ in range(3)]
    await asyncio.sleep(0)
    assert hls.blocked == 3
    with pytest.raises(RtspError) as refused:
        await hls.wait(entry, never, 60)
    assert refused.value.status == 503
    live.online = False
    hls.sweep()  # the sweep notices: ENDLIST, and every waiter is answered at once
    assert await asyncio.wait_for(asyncio.gather(*waiters), 5) == [True, True, True]
    assert entry.stream.segmenter.ended and hls.blocked == 0
    assert hls.entry(live.name) is entry  # its last playlist stays readable until idle
    await hls.close()


async def test_a_wait_times_out(source: Path) -> None:
    live, _ = as_live(source)
    hls = LiveHls({live.name: live}, Counter(), SegmenterSettings())
    entry = hls.entry(live.name)
    assert await hls.wait(entry, lambda: False, 0.01) is False
    assert await hls.wait(entry, lambda: True, 0.01) is True
    await hls.close()


async def test_dvr_window_per_path(source: Path) -> None:
    live, _ = as_live(source)  # live/test
    config = ServerConfig(hls_dvr_seconds=120, paths={"live/*": PathSettings(hls_dvr_seconds=600)})
    hls = from_config({live.name: live}, Counter(), config)
    assert hls.entry(live.name).stream.segmenter.settings.dvr_seconds == 600
    assert hls.settings_for("other").dvr_seconds == 120
    await hls.close()
    with pytest.raises(ConfigError):
        PathSettings(hls_dvr_seconds=5)


async def test_recorded_path_lists_its_recording(source: Path, tmp_path: Path) -> None:
    live, _ = as_live(source)  # live/test
    config = ServerConfig(record_dir=tmp_path, paths={"live/test": PathSettings(record=True)})
    hls = from_config({live.name: live}, Counter(), config)
    entry = hls.entry(live.name)
    assert entry.stream.segmenter.settings.recorded_seconds == 3600
    assert entry.recordings == tmp_path / "live" / "test"
    assert hls.settings_for("live/other").recorded_seconds == 0 and hls.recordings_for("live/other") is None
    await hls.close()
