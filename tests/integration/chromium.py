"""Headless Chromium driven over the DevTools protocol (aiohttp's websocket client)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import re
import shutil
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# an expression for DevTools.wait_for: truthy once the page's <video> played N seconds, or failed
PLAYED_SECONDS = (
    "(() => {{ const v = document.querySelector('video');"
    " return (v.error || v.currentTime > {0}) &&"
    " {{t: v.currentTime, error: v.error && v.error.message, w: v.videoWidth}} }})()"
)


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


async def start_chromium(tmp: Path, scratch: Path, *extra: str) -> tuple[asyncio.subprocess.Process, str]:
    """Chromium with its profile in ``tmp`` and its TMPDIR ``scratch`` (where it leaves a folder
    when killed; a short path: it holds a unix socket, whose path may not exceed 107 bytes)."""
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
        *extra,
        "--remote-debugging-port=0",
        "about:blank",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "TMPDIR": str(scratch)},
    )
    assert process.stderr is not None
    while True:
        line = (await asyncio.wait_for(process.stderr.readline(), 30)).decode(errors="replace")
        if not line:
            raise AssertionError("chromium exited before DevTools started")
        m = re.search(r"DevTools listening on (ws://\S+)", line)
        if m:
            return process, m.group(1)


@contextlib.asynccontextmanager
async def chromium_tab(tmp: Path, *extra: str) -> AsyncIterator[DevTools]:
    """A headless Chromium with its first tab open to DevTools (Page domain enabled); killed after.

    ``extra``: more command-line switches (``--ignore-certificate-errors`` for test certificates)."""
    scratch = Path(tempfile.mkdtemp(prefix="streamd-chromium-"))
    try:
        process, browser_ws = await start_chromium(tmp, scratch, *extra)
        try:
            devtools_http = browser_ws.split("/devtools/")[0].replace("ws://", "http://")
            async with aiohttp.ClientSession() as http:
                targets = await (await http.get(f"{devtools_http}/json/list")).json()
                page = next(t for t in targets if t["type"] == "page")
                async with http.ws_connect(page["webSocketDebuggerUrl"], max_msg_size=0) as ws:
                    tab = DevTools(ws)
                    await tab.call("Page.enable")
                    yield tab
        finally:
            process.kill()
            await process.wait()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
