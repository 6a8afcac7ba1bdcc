"""The Forwarder's I/O: a sibling's answer streamed back, a client leaving mid-answer, no sibling.

A real aiohttp "sibling" on a unix socket in ``tmp_path`` and a real front server whose handler
forwards to it; no worker processes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from streamd.workers.http_forward import Forwarder, socket_path

CHUNK = b"x" * 65536


@pytest.fixture
async def front(tmp_path: Path) -> AsyncIterator[str]:
    """The front's base URL; its requests go to worker 1, which streams a long answer slowly."""

    async def endless(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "video/mp4"})
        await response.prepare(request)
        try:
            for _ in range(200):
                await response.write(CHUNK)
                await asyncio.sleep(0.01)
            await response.write_eof()
        except ConnectionError:  # the forwarder let go (the app's error middleware does this)
            pass
        return response

    async def short(request: web.Request) -> web.Response:
        return web.Response(text=f"from worker 1: {request.headers['X-Streamd-Client']}")

    sibling = web.Application()
    sibling.add_routes([web.get("/endless", endless), web.get("/short", short)])
    sibling_runner = web.AppRunner(sibling)
    await sibling_runner.setup()
    await web.UnixSite(sibling_runner, str(socket_path(tmp_path, 1))).start()

    forwarder = Forwarder(tmp_path, me=0)

    async def forward(request: web.Request) -> web.StreamResponse:
        worker = 2 if request.path == "/nobody" else 1  # worker 2 has no socket
        return await forwarder.forward(request, worker)

    app = web.Application()
    app.add_routes([web.get("/{tail:.*}", forward)])
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await forwarder.close()
        await runner.cleanup()
        await sibling_runner.cleanup()


async def test_the_siblings_answer_comes_back_with_the_clients_address(front: str) -> None:
    async with aiohttp.ClientSession() as http, http.get(f"{front}/short") as response:
        assert response.status == 200
        assert await response.text() == "from worker 1: 127.0.0.1"


async def test_a_client_leaving_mid_answer_is_no_warning(
    front: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="streamd")
    async with aiohttp.ClientSession() as http:
        response = await http.get(f"{front}/endless")
        await response.content.readexactly(len(CHUNK))
        response.close()  # the player goes away while the sibling still sends
    for _ in range(500):
        if any("left mid-answer" in r.getMessage() for r in caplog.records):
            break
        await asyncio.sleep(0.01)
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert any("the client left mid-answer" in r.getMessage() for r in caplog.records)


async def test_no_sibling_is_a_502_a_web_player_can_read(front: str) -> None:
    async with aiohttp.ClientSession() as http, http.get(f"{front}/nobody") as response:
        assert response.status == 502
        assert response.headers["Access-Control-Allow-Origin"] == "*"
        assert "worker 2 did not answer" in await response.text()
