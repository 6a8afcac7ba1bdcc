"""ffmpeg over both RTSP-over-HTTP tunnels (RTSP port and HTTP port) against a protected path: the
GET half answers 401 with a Basic prompt, ffmpeg retries with the credentials from its URL, and
the server's Authorizer (here an external hook) decides (issue 14, items 3 and 4)."""

from __future__ import annotations

import asyncio
import base64
import importlib.util
import os
import shutil
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from tests.integration.chromium import CHROMIUM, PLAYED_SECONDS, chromium_tab
from tests.integration.conftest import ServerProcess, need, start_server, stop_all

pytestmark = pytest.mark.integration

PATH = "cams/door.mp4"


@pytest.fixture
async def hooked(
    media_dir: Path, tmp_path: Path
) -> AsyncIterator[tuple[ServerProcess, list[dict[str, Any]]]]:
    """A server whose decisions are a local hook's: alice/right may read cams/*, nobody else."""
    calls: list[dict[str, Any]] = []

    async def decide(request: web.Request) -> web.Response:
        body = await request.json()
        calls.append(body)
        ok = (body["user"], body["password"]) == ("alice", "right") and body["path"].startswith("cams/")
        return web.Response(status=200 if ok else 403)

    app = web.Application()
    app.router.add_post("/auth", decide)
    async with TestServer(app) as hook:
        media = tmp_path / "media"
        (media / "cams").mkdir(parents=True)
        shutil.copy(media_dir / "ten.mp4", media / PATH)
        config = tmp_path / "streamd.toml"
        config.write_text(f'auth_hook = "{hook.make_url("/auth")}"\n')
        server = await asyncio.to_thread(start_server, media, tmp_path, "--config", str(config))
        try:
            yield server, calls
        finally:
            await asyncio.to_thread(stop_all, server)


async def _ffmpeg(url: str) -> tuple[int, str]:
    need("ffmpeg")
    process = await asyncio.create_subprocess_exec(
        *("ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-rtsp_transport", "http"),
        *("-i", url, "-t", "2", "-c", "copy", "-f", "null", "-"),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(process.communicate(), 90)
    return process.returncode or 0, err.decode(errors="replace")


@pytest.mark.parametrize("port", ["rtsp", "http"])
async def test_ffmpeg_tunnel_with_basic_credentials(
    hooked: tuple[ServerProcess, list[dict[str, Any]]], port: str
) -> None:
    server, calls = hooked
    number = server.port if port == "rtsp" else server.http_port
    code, err = await _ffmpeg(f"rtsp://alice:right@127.0.0.1:{number}/{PATH}")
    assert code == 0, err
    expected = {"user": "alice", "action": "read", "path": PATH, "protocol": "http"}.items()
    assert any(expected <= call.items() for call in calls)  # the GET half (RTSP inside: protocol "rtsp")
    code, _ = await _ffmpeg(f"rtsp://127.0.0.1:{number}/{PATH}")  # no credentials: 401, nothing to retry
    assert code != 0 and "RTSP-over-HTTP request refused: 401 auth hook answered 403" in server.log()
    code, _ = await _ffmpeg(f"rtsp://alice:wrong@127.0.0.1:{number}/{PATH}")
    assert code != 0 and "RTSP-over-HTTP request refused: 403 auth hook answered 403" in server.log()
    assert "Traceback" not in server.log()


async def _local_users_server(media_dir: Path, tmp_path: Path) -> ServerProcess:
    """A server with one user, viewer/vpass, who may read cams/* (made with ``streamd passwd``)."""
    media = tmp_path / "media"
    (media / "cams").mkdir(parents=True)
    shutil.copy(media_dir / "ten.mp4", media / PATH)
    (media / "other.mp4").write_bytes((media_dir / "ten.mp4").read_bytes())
    password = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "streamd.cli",
        "passwd",
        "viewer",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    hashed, _ = await password.communicate(b"vpass\n")
    config = tmp_path / "streamd.toml"
    config.write_text(
        "[[users]]\n"
        'name = "viewer"\n'
        f'password = "{hashed.decode().strip()}"\n'
        'permissions = [{ action = "read", path = "cams/*" }]\n'
    )
    return await asyncio.to_thread(start_server, media, tmp_path, "--config", str(config))


NEEDS_USERS = pytest.mark.skipif(
    importlib.util.find_spec("streamd.auth.users") is None,
    reason="needs the local [[users]] Authenticator (helper a1's streamd.auth.users)",
)


@NEEDS_USERS
async def test_ffmpeg_tunnel_with_local_users(media_dir: Path, tmp_path: Path) -> None:
    """With ``[[users]]``: the tunnel's GET and every RTSP request inside it are authorized."""
    server = await _local_users_server(media_dir, tmp_path)
    try:
        for number in (server.port, server.http_port):
            code, err = await _ffmpeg(f"rtsp://viewer:vpass@127.0.0.1:{number}/{PATH}")
            assert code == 0, err
            assert (await _ffmpeg(f"rtsp://127.0.0.1:{number}/{PATH}"))[0] != 0
            assert (await _ffmpeg(f"rtsp://viewer:vpass@127.0.0.1:{number}/other.mp4"))[0] != 0
    finally:
        await asyncio.to_thread(stop_all, server)


async def test_pages_on_the_rtsp_port_are_authorized_too(
    hooked: tuple[ServerProcess, list[dict[str, Any]]],
) -> None:
    """The RTSP port hands HTTP requests to the HTTP side, whose checks apply unchanged."""
    server, _ = hooked
    async with aiohttp.ClientSession() as session:
        for number in (server.port, server.http_port):
            async with session.get(f"http://127.0.0.1:{number}/sdp/{PATH}") as refused:
                assert refused.status == 401 and refused.headers["WWW-Authenticate"].startswith("Basic")
            auth = {"Authorization": "Basic " + base64.b64encode(b"alice:right").decode()}
            async with session.get(f"http://127.0.0.1:{number}/sdp/{PATH}", headers=auth) as allowed:
                assert allowed.status == 200
            async with session.get(f"http://127.0.0.1:{number}/api/v1/paths") as listing:
                assert (await listing.json())["paths"] == []  # anonymous: nothing readable


async def test_chromium_logs_in_and_plays_a_protected_path(
    hooked: tuple[ServerProcess, list[dict[str, Any]]], tmp_path: Path
) -> None:
    """A browser given the credentials in the URL: the watch page and its video both pass."""
    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip("chromium is not installed (scripts/test installs it)")
    server, calls = hooked
    async with chromium_tab(tmp_path) as tab:
        await tab.call("Page.navigate", url=f"http://alice:right@127.0.0.1:{server.http_port}/watch/{PATH}")
        state = await tab.wait_for(PLAYED_SECONDS.format(1.0), timeout=60)
        assert not state["error"] and state["w"] > 0, state
        # the index only filters; /login makes the browser answer the prompt with what it knows
        await tab.call("Page.navigate", url=f"http://127.0.0.1:{server.http_port}/")
        await tab.wait_for("document.readyState === 'complete' && !!document.querySelector('a.login')")
        await tab.evaluate("document.querySelector('a.login').click()")
        await tab.wait_for(f"location.pathname === '/' && document.body.innerHTML.includes('>{PATH}</a>')")
    assert any(c["path"] == PATH and c["user"] == "alice" for c in calls)


@NEEDS_USERS
async def test_chromium_logs_in_with_local_users(media_dir: Path, tmp_path: Path) -> None:
    """The local users' own challenges (Digest unless Basic is configured) in a real browser."""
    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip("chromium is not installed (scripts/test installs it)")
    server = await _local_users_server(media_dir, tmp_path)
    try:
        async with chromium_tab(tmp_path) as tab:
            await tab.call(
                "Page.navigate", url=f"http://viewer:vpass@127.0.0.1:{server.http_port}/watch/{PATH}"
            )
            state = await tab.wait_for(PLAYED_SECONDS.format(1.0), timeout=60)
            assert not state["error"] and state["w"] > 0, state
            await tab.call("Page.navigate", url=f"http://127.0.0.1:{server.http_port}/login")
            await tab.wait_for(
                f"location.pathname === '/' && document.body.innerHTML.includes('>{PATH}</a>')"
            )
            assert not await tab.evaluate("document.body.innerHTML.includes('>other.mp4</a>')")
    finally:
        await asyncio.to_thread(stop_all, server)
