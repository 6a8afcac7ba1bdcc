"""The HTTP side asks the Authorizer: media routes are ``read``, lists are filtered, ``/metrics`` and
the session list need their actions, tunnels are authorized on their GET half (issue 14, item 3)."""

from __future__ import annotations

import asyncio
import dataclasses
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer
from yarl import URL

from streamd.catalog import Catalog
from streamd.config import ServerConfig
from streamd.http import build_app
from streamd.http.app import HttpService
from streamd.server import RtspServer
from tests.integration.authfake import CHALLENGE, TableAuthorizer, basic

pytestmark = pytest.mark.integration

VIEWER = basic("viewer", "vpass")
ADMIN = basic("admin", "apass")
CAM, OTHER, OPEN = "cams/door.mp4", "other/b.mp4", "open/c.mp4"


@pytest.fixture(scope="module")
def folder(media_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("auth") / "media"
    for name in (CAM, OTHER, OPEN):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(media_dir / "ten.mp4", root / name)
    return root


@pytest.fixture
def rtsp(folder: Path) -> RtspServer:
    # a JWT key makes the server "configured" (lists filtered, API closed); the fake decides
    config = dataclasses.replace(
        ServerConfig(rtsp_port=8554, max_remuxes_per_client=8), jwt_key="unused", jwt_algorithms=["HS256"]
    )
    server = RtspServer(config, Catalog(folder, test_stream=None))
    server.authorizer = TableAuthorizer()
    return server


@pytest.fixture
async def client(rtsp: RtspServer) -> AsyncIterator[TestClient]:
    async with TestClient(TestServer(build_app(rtsp, rtsp.catalog), handler_cancellation=True)) as c:
        yield c


@pytest.mark.parametrize("route", ["/watch/", "/mp4/", "/files/", "/sdp/"])
async def test_media_routes_need_read_of_their_path(client: TestClient, route: str) -> None:
    anonymous = await client.get(route + CAM)
    assert anonymous.status == 401
    assert anonymous.headers.getall("WWW-Authenticate") == list(CHALLENGE)
    assert "login needed" not in await anonymous.text()  # the reason is for the log only
    async with client.get(route + CAM, headers=VIEWER) as ok:
        assert ok.status == 200
    assert (await client.get(route + OTHER, headers=VIEWER)).status == 403
    assert (await client.get(route + CAM, headers=basic("viewer", "wrong"))).status == 401
    async with client.get(route + OTHER, headers=ADMIN) as ok:
        assert ok.status == 200
    async with client.get(route + OPEN) as ok:  # what the anonymous user may read needs no login
        assert ok.status == 200


async def test_dot_segments_cannot_leave_a_permitted_folder(client: TestClient) -> None:
    sneaky = URL("/files/cams/%2E%2E/other/b.mp4", encoded=True)
    assert (await client.get(sneaky, headers=VIEWER)).status == 404
    dotted = URL("/files/cams/./door.mp4", encoded=True)
    assert (await client.get(dotted, headers=VIEWER)).status == 200


async def test_index_and_paths_api_list_only_readable_paths(client: TestClient) -> None:
    for headers, expected in ((None, {OPEN}), (VIEWER, {CAM}), (ADMIN, {CAM, OTHER, OPEN})):
        listed = await (await client.get("/api/v1/paths", headers=headers)).json()
        assert {p["name"] for p in listed["paths"]} == expected
        page = await (await client.get("/", headers=headers)).text()
        assert {n for n in (CAM, OTHER, OPEN) if f">{n}</a>" in page} == expected


async def test_login_prompts_then_returns_to_the_index(client: TestClient) -> None:
    prompt = await client.get("/login", allow_redirects=False)
    assert prompt.status == 401 and "Basic" in prompt.headers["WWW-Authenticate"]
    back = await client.get("/login", headers=VIEWER, allow_redirects=False)
    assert back.status == 303 and back.headers["Location"] == "/"


@pytest.mark.parametrize("route", ["/metrics", "/api/v1/sessions"])
async def test_metrics_and_sessions_need_their_actions(client: TestClient, route: str) -> None:
    assert (await client.get(route)).status == 401
    assert (await client.get(route, headers=VIEWER)).status == 403
    assert (await client.get(route, headers=ADMIN)).status == 200


async def test_openapi_is_open(client: TestClient) -> None:
    assert (await client.get("/api/v1/openapi.json")).status == 200


async def test_admin_endpoints_need_api_after_their_own_checks(client: TestClient) -> None:
    assert (await client.get("/api/v1/drain")).status == 401
    assert (await client.get("/api/v1/drain", headers=VIEWER)).status == 403
    assert (await client.get("/api/v1/drain", headers=ADMIN)).status == 200
    refused = await client.post("/api/v1/drain", json={"to": [], "grace": 1}, headers=VIEWER)
    assert refused.status == 403


async def _tunnel_get(port: int, path: str, headers: dict[str, str] | None) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    writer.write(
        f"GET /{path} HTTP/1.0\r\nx-sessioncookie: c{id(headers)}{len(path)}\r\n"
        f"Accept: application/x-rtsp-tunnelled\r\n{extra}\r\n".encode()
    )
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    writer.close()
    return head


async def test_tunnel_get_half_is_authorized(rtsp: RtspServer) -> None:
    service = HttpService(rtsp, rtsp.catalog, "127.0.0.1", 0)
    await service.start()
    try:
        port = service.bound_port
        refused = await _tunnel_get(port, CAM, None)
        assert refused.startswith(b"HTTP/1.0 401") and b'WWW-Authenticate: Basic realm="streamd"' in refused
        assert (await _tunnel_get(port, OTHER, VIEWER)).startswith(b"HTTP/1.0 403")
        opened = await _tunnel_get(port, CAM, VIEWER)
        assert b" 200 " in opened.split(b"\r\n")[0] and b"application/x-rtsp-tunnelled" in opened
        asked = [r for r in rtsp.authorizer.asked if r.protocol == "http"]  # type: ignore[attr-defined]
        assert {(r.action, r.path) for r in asked} == {("read", CAM), ("read", OTHER)}
    finally:
        await service.stop()


@pytest.mark.parametrize(
    "authorization",
    [
        "Basic !!!",
        "Basic",
        "Digest garbage",
        "Bearer",
        "x" * 5000,
        "Basic " + "QQ==" * 1000,
        "basic dmlld2Vy",
    ],
)
async def test_malformed_authorization_is_401_and_nothing_else(
    client: TestClient, authorization: str
) -> None:
    response = await client.get("/sdp/" + CAM, headers={"Authorization": authorization})
    assert response.status == 401 and response.headers.getall("WWW-Authenticate") == list(CHALLENGE)
    assert (await client.get("/sdp/" + OPEN)).status == 200  # and everyone else carries on


async def test_lists_need_one_check_of_a_one_time_answer(client: TestClient) -> None:
    """A Digest answer is good once: the filter asks once, then goes by the user's permissions."""
    listed = await (await client.get("/api/v1/paths", headers={"Authorization": "Digest viewer n1"})).json()
    assert [p["name"] for p in listed["paths"]] == [CAM]
    page = await (await client.get("/", headers={"Authorization": "Digest admin n2"})).text()
    assert all(f">{n}</a>" in page for n in (CAM, OTHER, OPEN))
