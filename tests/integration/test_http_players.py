"""Real clients of the HTTP side: ffmpeg reads the fMP4 fallback and the RTSP-over-HTTP tunnel
(bit-exact), and headless Chromium opens the index page, follows a watch link and plays the video."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.integration.conftest import ARTIFACTS, ServerProcess, need, start_server
from tests.integration.source import (
    received_audio_frames,
    received_video_nals,
    source_audio_frames,
    source_video_nals,
)

pytestmark = pytest.mark.integration

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@pytest.fixture(scope="module")
def web(
    media_dir: Path, test_stream_cache: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    proc = start_server(media_dir, tmp_path_factory.mktemp("web"), cache_dir=test_stream_cache)
    yield proc
    code = proc.stop()
    log = proc.log()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shutil.copy(proc.log_path, ARTIFACTS / f"http-{proc.log_path.name}")
    assert "Traceback" not in log, log
    assert code == 0, log


def _ffmpeg(args: list[str], out: Path) -> tuple[Path, Path]:
    need("ffmpeg")
    video, audio = out.with_suffix(".h264"), out.with_suffix(".aac")
    result = subprocess.run(
        [
            *("ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", *args),
            *("-map", "0:v", "-c", "copy", "-f", "h264", "-y", str(video)),
            *("-map", "0:a", "-c", "copy", "-f", "adts", "-y", str(audio)),
        ],
        capture_output=True,
        timeout=90,
    )
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    return video, audio


def test_ffprobe_reads_the_fmp4_fallback(web: ServerProcess) -> None:
    need("ffprobe")
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-show_streams", "-of", "json", web.http("mp4/sub%20dir/moov%20end.mp4")],
        capture_output=True,
        timeout=60,
        check=True,
    )
    streams = {s["codec_type"]: s for s in json.loads(out.stdout)["streams"]}
    assert streams["video"]["codec_name"] == "h264" and streams["audio"]["codec_name"] == "aac"


def test_ffmpeg_fmp4_fallback_is_bit_exact(web: ServerProcess, tmp_path: Path) -> None:
    video, audio = _ffmpeg(["-i", web.http("mp4/bframes.mp4")], tmp_path / "fmp4")
    assert received_video_nals(video) == source_video_nals(web.media / "bframes.mp4")
    assert received_audio_frames(audio) == source_audio_frames(web.media / "bframes.mp4")


@pytest.mark.parametrize("port", ["rtsp", "http"])
def test_ffmpeg_over_the_http_tunnel_is_bit_exact(web: ServerProcess, tmp_path: Path, port: str) -> None:
    number = web.port if port == "rtsp" else web.http_port
    url = f"rtsp://127.0.0.1:{number}/bframes.mp4"
    video, audio = _ffmpeg(["-rtsp_transport", "http", "-i", url], tmp_path / "tunnel")
    assert received_video_nals(video) == source_video_nals(web.media / "bframes.mp4")
    assert received_audio_frames(audio) == source_audio_frames(web.media / "bframes.mp4")
    assert "(HTTP tunnel)" in web.log()


# --- headless Chromium over the DevTools protocol ------------------------------------------------


class DevTools:
    """The few DevTools protocol calls the test needs, over aiohttp's websocket client."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.next_id = 0

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        self.next_id += 1
        await self.ws.send_json({"id": self.next_id, "method": method, "params": params})
        while True:
            message = await asyncio.wait_for(self.ws.receive_json(), 30)
            if message.get("id") == self.next_id:
                assert "error" not in message, message
                return message["result"]

    async def evaluate(self, expression: str) -> Any:
        result = await self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return result["result"].get("value")

    async def wait_for(self, expression: str, timeout: float = 20) -> Any:
        deadline = asyncio.get_running_loop().time() + timeout
        while asyncio.get_running_loop().time() < deadline:
            value = await self.evaluate(expression)
            if value:
                return value
            await asyncio.sleep(0.2)
        raise AssertionError(f"timed out waiting for {expression}")

    async def screenshot(self, *targets: Path) -> None:
        data = base64.b64decode((await self.call("Page.captureScreenshot", format="png"))["data"])
        for target in targets:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)


async def _chromium(tmp: Path) -> tuple[asyncio.subprocess.Process, str]:
    process = await asyncio.create_subprocess_exec(
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--mute-audio",
        "--autoplay-policy=no-user-gesture-required",
        "--window-size=1000,560",
        f"--user-data-dir={tmp / 'profile'}",
        "--remote-debugging-port=0",
        "about:blank",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stderr is not None
    while True:
        line = (await asyncio.wait_for(process.stderr.readline(), 30)).decode(errors="replace")
        if not line:
            raise AssertionError("chromium exited before DevTools started")
        m = re.search(r"DevTools listening on (ws://\S+)", line)
        if m:
            return process, m.group(1)


async def test_chromium_opens_index_follows_watch_link_and_plays(web: ServerProcess, tmp_path: Path) -> None:
    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip("chromium is not installed (scripts/test installs it)")
    process, browser_ws = await _chromium(tmp_path)
    try:
        devtools_http = browser_ws.split("/devtools/")[0].replace("ws://", "http://")
        async with aiohttp.ClientSession() as http:
            targets = await (await http.get(f"{devtools_http}/json/list")).json()
            page = next(t for t in targets if t["type"] == "page")
            async with http.ws_connect(page["webSocketDebuggerUrl"], max_msg_size=0) as ws:
                tab = DevTools(ws)
                await tab.call("Page.enable")
                await tab.call("Page.navigate", url=web.http())
                await tab.wait_for(
                    "document.readyState === 'complete' && !!document.querySelector('a.watch')"
                )
                await tab.screenshot(ARTIFACTS / "http-index-page.png")  # docs/index-page.png is a copy
                await tab.evaluate("document.querySelector('a.watch[href=\"/watch/ten.mp4\"]').click()")
                await tab.wait_for(
                    "location.pathname === '/watch/ten.mp4' && !!document.querySelector('video')"
                )
                state = await tab.wait_for(
                    "(() => { const v = document.querySelector('video');"
                    " return (v.error || v.currentTime > 1.5) &&"
                    " {t: v.currentTime, error: v.error && v.error.message, w: v.videoWidth} })()",
                    timeout=30,
                )
                await tab.screenshot(ARTIFACTS / "http-watch-page.png")
                assert state["error"] is None, state
                assert state["t"] > 1.5 and state["w"] == 160, state
    finally:
        process.kill()
        await process.wait()
