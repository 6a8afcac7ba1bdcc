"""Issue 12, item 6: the admin API is not open to every web page on the host (CSRF, DNS
rebinding). A page can POST ``text/plain`` cross-origin without asking, and after rebinding its
own name to 127.0.0.1 it is same-origin but sends its own ``Host``."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from tests import mediagen
from tests.integration.conftest import ServerProcess, start_server, stop_all

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "correct-horse-battery"
TARGET = {"to": ["rtsp://127.0.0.1:9/"], "grace": 60}


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    media = tmp_path_factory.mktemp("admin-media")
    mediagen.make_h264_aac_mp4(media / "clip.mp4", seconds=1)
    tmp = tmp_path_factory.mktemp("admin-server")
    (tmp / "token.toml").write_text(f'admin_token = "{TOKEN}"\n')
    open_server = start_server(media, tmp)
    token_server = start_server(media, tmp, "--config", str(tmp / "token.toml"))
    yield open_server, token_server
    stop_all(open_server, token_server)


async def _draining(session: aiohttp.ClientSession, server: ServerProcess) -> bool:
    async with session.get(server.http("api/v1/drain")) as response:
        return (await response.json())["draining"]


async def test_drain_needs_json_our_host_and_no_foreign_origin(
    servers: tuple[ServerProcess, ServerProcess],
) -> None:
    server, _ = servers
    ours = f"127.0.0.1:{server.http_port}"
    attacks = [  # (headers, body, status): what a page in the admin's browser can send
        ({"Content-Type": "text/plain"}, b'{"to": [], "grace": 60}', 400),
        ({"Content-Type": "application/json", "Host": f"rebound.example:{server.http_port}"}, None, 403),
        ({"Content-Type": "application/json", "Host": "127.0.0.1:1"}, None, 403),
        ({"Content-Type": "application/json", "Origin": "http://evil.example"}, None, 403),
        ({"Content-Type": "application/json", "Origin": "null"}, None, 403),
    ]
    async with aiohttp.ClientSession() as session:
        for headers, body, status in attacks:
            data = body if body is not None else b'{"to": [], "grace": 60}'
            async with session.post(server.http("api/v1/drain"), data=data, headers=headers) as response:
                assert response.status == status, (headers, await response.text())
            async with session.delete(server.http("api/v1/drain"), headers=headers) as response:
                assert response.status in (403, 200) and (response.status == 403) == (status == 403)
            assert not await _draining(session, server)
        # the server's own page (same origin) and localhost names still may
        headers = {"Origin": f"http://{ours}", "Host": f"localhost:{server.http_port}"}
        async with session.post(server.http("api/v1/drain"), json=TARGET, headers=headers) as response:
            assert response.status == 200
        assert await _draining(session, server)
        async with session.delete(server.http("api/v1/drain")) as response:
            assert response.status == 200
        assert not await _draining(session, server)
    assert "refused: cross-origin request from 'http://evil.example'" in server.log()


async def test_admin_token_is_required_when_configured(servers: tuple[ServerProcess, ServerProcess]) -> None:
    _, server = servers
    async with aiohttp.ClientSession() as session:
        for auth in (None, "Bearer wrong", f"Basic {TOKEN}"):
            headers = {"Authorization": auth} if auth else {}
            async with session.post(server.http("api/v1/drain"), json=TARGET, headers=headers) as response:
                assert response.status == 401 and "Bearer" in response.headers["WWW-Authenticate"]
        assert not await _draining(session, server)
        headers = {"Authorization": f"Bearer {TOKEN}", "Host": f"media.example:{server.http_port}"}
        async with session.post(
            server.http("api/v1/move/clip.mp4"), json=TARGET, headers=headers
        ) as response:
            assert response.status == 200


def test_the_cli_still_drains_and_moves(servers: tuple[ServerProcess, ServerProcess]) -> None:
    _, server = servers

    def streamd(*args: str, token: str | None = TOKEN) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if k != "STREAMD_ADMIN_TOKEN"}
        if token:
            env["STREAMD_ADMIN_TOKEN"] = token
        command = [sys.executable, "-m", "streamd.cli", *args, "--api", server.http()]
        return subprocess.run(command, capture_output=True, text=True, timeout=60, cwd=ROOT, env=env)

    refused = streamd("drain", "--to", "rtsp://127.0.0.1:9/", token=None)
    assert refused.returncode == 1 and "admin_token" in refused.stderr
    assert streamd("drain", "--to", "rtsp://127.0.0.1:9/").returncode == 0
    assert streamd("drain", "--cancel").returncode == 0
    moved = streamd("move", "clip.mp4", "--to", "rtsp://127.0.0.1:9/")
    assert moved.returncode == 0 and "moved to" in moved.stdout
    assert streamd("move", "clip.mp4").returncode == 0
