"""Issue 12, item 9: no server folder names in error bodies, and hidden files and folders are
served nowhere (RTSP, /files/, /mp4/, /sdp/) unless ``serve_dotfiles`` says so."""

from __future__ import annotations

import shutil
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import mediagen
from tests.integration.conftest import ServerProcess, start_server, stop_all
from tests.rtsp_client import RawRtspClient

pytestmark = pytest.mark.integration

Pair = tuple[ServerProcess, ServerProcess]
HIDDEN = (".hidden.mp4", ".secret/clip.mp4", "sub/.private/clip.mp4")


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("leak-media")
    mediagen.make_h264_aac_mp4(root / "clip.mp4", seconds=1)
    (root / "notes.txt").write_text("not media\n")
    for name in HIDDEN:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(root / "clip.mp4", root / name)
    return root


@pytest.fixture(scope="module")
def servers(media: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    tmp = tmp_path_factory.mktemp("leak-server")
    (tmp / "dotfiles.toml").write_text("serve_dotfiles = true\n")
    default = start_server(media, tmp)
    dotfiles = start_server(media, tmp, "--config", str(tmp / "dotfiles.toml"))
    yield default, dotfiles
    stop_all(default, dotfiles)


def _http_status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            response.read()
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


async def test_rtsp_415_does_not_show_the_media_folder(servers: Pair) -> None:
    server, _ = servers
    c = await RawRtspClient("127.0.0.1", server.port).connect()
    response = await c.request("DESCRIBE", c.url("notes.txt"))
    assert response.status == 415 and response.body, response
    body = response.body.decode()
    assert str(server.media) not in body and "notes.txt" in body
    await c.close()


async def test_hidden_files_and_folders_are_served_nowhere(
    servers: Pair,
) -> None:
    server, _ = servers
    c = await RawRtspClient("127.0.0.1", server.port).connect()
    for name in HIDDEN:
        assert (await c.request("DESCRIBE", c.url(name))).status == 404, name
        for route in ("files", "mp4", "sdp"):
            assert _http_status(server.http(f"{route}/{name}")) == 404, (route, name)
    assert (await c.request("DESCRIBE", c.url("clip.mp4"))).status == 200  # others as before
    assert _http_status(server.http("files/clip.mp4")) == 200
    await c.close()


async def test_serve_dotfiles_serves_them(servers: Pair) -> None:
    _, server = servers
    c = await RawRtspClient("127.0.0.1", server.port).connect()
    for name in HIDDEN:
        assert (await c.request("DESCRIBE", c.url(name))).status == 200, name
        assert _http_status(server.http(f"files/{name}")) == 200
    await c.close()
