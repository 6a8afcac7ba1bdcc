"""WHEP and WHIP ask the server's Authorizer like every route: ``read`` of the path to play,
``publish`` of it to publish (a bearer token, as OBS sends it); CORS preflights need nothing."""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from streamd.auth.model import ANONYMOUS, AuthRequest, AuthResult
from streamd.catalog import Catalog
from streamd.config import ServerConfig
from streamd.http import build_app
from streamd.server import RtspServer

pytestmark = pytest.mark.integration

OFFER = "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:0\r\n"


class BearerAuthorizer:
    """``Bearer cam-token`` may publish live/*; anybody may read open/*; the rest needs a login."""

    def __init__(self) -> None:
        self.asked: list[AuthRequest] = []

    async def authorize(self, request: AuthRequest, now: float) -> AuthResult:
        self.asked.append(request)
        if request.authorization == "Bearer cam-token":
            if request.action == "publish" and request.path.startswith("live/"):
                return AuthResult(True, "cam")
            return AuthResult(False, "cam", status=403, reason="no permission")
        if request.action == "read" and request.path.startswith("open/"):
            return AuthResult(True, ANONYMOUS)
        return AuthResult(False, status=401, challenges=('Bearer realm="streamd"',), reason="login needed")


@pytest.fixture
async def client(media_dir: Path, tmp_path: Path) -> AsyncIterator[tuple[TestClient, BearerAuthorizer]]:
    root = tmp_path / "media"
    for name in ("open/a.mp4", "closed/b.mp4"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(media_dir / "ten.mp4", root / name)
    config = dataclasses.replace(ServerConfig(rtsp_port=8554), jwt_key="unused", jwt_algorithms=["HS256"])
    server = RtspServer(config, Catalog(root, test_stream=None))
    authorizer = server.authorizer = BearerAuthorizer()
    async with TestClient(TestServer(build_app(server, server.catalog))) as c:
        yield c, authorizer


async def test_whip_needs_publish_and_takes_a_bearer_token(
    client: tuple[TestClient, BearerAuthorizer],
) -> None:
    http, authorizer = client
    sdp = {"Content-Type": "application/sdp"}
    anonymous = await http.post("/whip/live/cam", data=OFFER, headers=sdp)
    assert anonymous.status == 401
    assert anonymous.headers["WWW-Authenticate"] == 'Bearer realm="streamd"'
    assert anonymous.headers["Access-Control-Allow-Origin"] == "*"  # a page can read why
    assert authorizer.asked[-1].action == "publish" and authorizer.asked[-1].path == "live/cam"
    elsewhere = await http.post(
        "/whip/closed/x", data=OFFER, headers={**sdp, "Authorization": "Bearer cam-token"}
    )
    assert elsewhere.status == 403
    # allowed: the offer itself is then judged (this one has no ICE credentials)
    allowed = await http.post(
        "/whip/live/cam", data=OFFER, headers={**sdp, "Authorization": "Bearer cam-token"}
    )
    assert allowed.status == 400 and "ICE credentials" in await allowed.text()


async def test_whep_needs_read_and_preflights_need_nothing(
    client: tuple[TestClient, BearerAuthorizer],
) -> None:
    http, authorizer = client
    sdp = {"Content-Type": "application/sdp"}
    assert (await http.post("/whep/closed/b.mp4", data=OFFER, headers=sdp)).status == 401
    assert authorizer.asked[-1].action == "read" and authorizer.asked[-1].path == "closed/b.mp4"
    assert (await http.post("/whep/open/a.mp4", data=OFFER, headers=sdp)).status == 400  # read: allowed
    asked = len(authorizer.asked)
    for url in ("/whep/closed/b.mp4", "/whip/live/cam", "/whep-session/x", "/whip-session/x"):
        preflight = await http.options(
            url, headers={"Origin": "http://a.example", "Access-Control-Request-Method": "POST"}
        )
        assert preflight.status == 204, url
        assert "Location" in preflight.headers["Access-Control-Expose-Headers"]
    assert len(authorizer.asked) == asked
    assert (await http.get("/webrtc/watch.js")).status == 200
