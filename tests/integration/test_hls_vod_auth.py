"""Every HLS route is a ``read`` of its path for the same Authorizer as ``/mp4``: playlists,
init segments and segments alike, checked before anything is probed or made."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from streamd.catalog import Catalog
from streamd.config import ServerConfig
from streamd.http import build_app
from streamd.server import RtspServer
from tests import mediagen
from tests.integration.authfake import CHALLENGE, TableAuthorizer, basic

pytestmark = pytest.mark.integration

VIEWER = basic("viewer", "vpass")
CAM, OTHER = "cams/door.mp4", "other/b.mp4"
OBJECTS = [
    "index.m3u8",
    "index.m3u8?format=ts",
    "main/media.m3u8",
    "main/init.mp4",
    "main/0.m4s",
    "main/0.ts",
]


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("hls-auth") / "media"
    for name in (CAM, OTHER):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        mediagen.make_h264_aac_mp4(root / name, seconds=1, size=(160, 120), faststart=True)
    return root


@pytest.fixture
async def client(folder: Path) -> AsyncIterator[tuple[TestClient, TableAuthorizer]]:
    config = dataclasses.replace(ServerConfig(rtsp_port=8554), jwt_key="unused", jwt_algorithms=["HS256"])
    server = RtspServer(config, Catalog(folder, test_stream=None))
    server.authorizer = authorizer = TableAuthorizer()
    async with TestClient(TestServer(build_app(server, server.catalog), handler_cancellation=True)) as c:
        yield c, authorizer


@pytest.mark.parametrize("name", OBJECTS)
async def test_every_hls_object_needs_read_of_its_path(
    client: tuple[TestClient, TableAuthorizer], name: str
) -> None:
    http, authorizer = client
    anonymous = await http.get(f"/hls/{CAM}/{name}")
    assert anonymous.status == 401 and anonymous.headers.getall("WWW-Authenticate") == list(CHALLENGE)
    assert authorizer.asked[-1].action == "read" and authorizer.asked[-1].path == CAM
    assert (await http.get(f"/hls/{OTHER}/{name}", headers=VIEWER)).status == 403
    async with http.get(f"/hls/{CAM}/{name}", headers=VIEWER) as ok:
        assert ok.status == 200, await ok.text()


async def test_dot_segments_cannot_leave_a_permitted_folder(
    client: tuple[TestClient, TableAuthorizer],
) -> None:
    http, _authorizer = client
    response = await http.get("/hls/cams/%2E%2E/other/b.mp4/index.m3u8", headers=VIEWER)
    assert response.status in (403, 404)
