"""Browsers without a file's video decoder: headless Chromium here has no HEVC decoder, so the watch
page must notice (it asks the browser about the file's codec string) and play the copy the server
converts to H.264 (``/mp4/<path>?video=h264``), saying so on the page."""

from __future__ import annotations

import asyncio
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import av
import pytest

from tests.integration.chromium import PLAYED_SECONDS, chromium_tab
from tests.integration.conftest import ARTIFACTS, ServerProcess, need, start_server, stop_all

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def hevc_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    need("ffmpeg")
    need("chromium")
    media = tmp_path_factory.mktemp("hevc-media")
    subprocess.run(
        [
            *("ffmpeg", "-nostdin", "-loglevel", "error"),
            *("-f", "lavfi", "-i", "testsrc2=d=6:s=320x240:r=25", "-f", "lavfi", "-i", "sine=d=6"),
            *("-c:v", "libx265", "-x265-params", "log-level=error:keyint=25", "-tag:v", "hvc1"),
            *("-c:a", "aac", "-y", str(media / "hevc.mp4")),
        ],
        check=True,
        timeout=120,
    )
    proc = start_server(media, tmp_path_factory.mktemp("hevc-server"))
    yield proc
    stop_all(proc)


def test_hevc_plays_as_h264_in_a_browser_without_hevc(hevc_server: ServerProcess, tmp_path: Path) -> None:
    with urllib.request.urlopen(hevc_server.http("api/v1/paths"), timeout=30) as response:
        body = response.read().decode()
    assert '"video_codec": "hvc1.1.' in body, body

    async def run() -> tuple[dict, str, str, bool]:
        async with chromium_tab(tmp_path) as tab:
            supported = await tab.evaluate(
                "MediaSource.isTypeSupported('video/mp4; codecs=\"hvc1.1.6.L30.90\"')"
            )
            await tab.call("Page.navigate", url=hevc_server.http("watch/hevc.mp4"))
            state = await tab.wait_for(PLAYED_SECONDS.format(1.5), timeout=60)
            await tab.screenshot(ARTIFACTS / "http-watch-hevc-converted.png")
            status = await tab.evaluate("document.getElementById('status').textContent")
            src = await tab.evaluate("document.getElementById('player').src")
            return state, status, src, supported

    state, status, src, supported = asyncio.run(run())
    if supported:
        pytest.skip("this Chromium decodes HEVC: nothing to convert")
    assert state["error"] is None, state
    assert state["t"] > 1.5 and state["w"] == 320, state
    assert src.endswith("/mp4/hevc.mp4?video=h264"), src
    assert "HEVC" in status and "H.264" in status, status


def _mp4_video_codec(server: ServerProcess, query: str, tmp: Path) -> str:
    with urllib.request.urlopen(server.http(f"mp4/hevc.mp4{query}"), timeout=60) as response:
        body = response.read()
    out = tmp / "out.mp4"
    out.write_bytes(body)
    with av.open(str(out)) as container:
        return container.streams.video[0].codec_context.codec.canonical_name


def test_mp4_renditions(hevc_server: ServerProcess, tmp_path: Path) -> None:
    """The original is copied; ``?video=h264`` converts; any other value is refused."""
    assert _mp4_video_codec(hevc_server, "", tmp_path) == "hevc"
    assert _mp4_video_codec(hevc_server, "?video=h264&start=2", tmp_path) == "h264"
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(hevc_server.http("mp4/hevc.mp4?video=vp8"), timeout=30)
    assert refused.value.code == 400
