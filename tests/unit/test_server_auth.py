"""Authorization through the real request handling (tests/unit/harness.py): every request is
checked, challenges are answered, sessions are bound to their user (454 to anyone else), and a
reader may not publish."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator
from pathlib import Path

import pytest_asyncio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamd.auth.secrets import make_secret
from streamd.auth.users import parse_users
from streamd.rtsp.client import ClientProtocol
from streamd.rtsp.message import Response
from tests.unit.harness import ANNOUNCED, FakeConnection, Harness, session_id

UDP = {"Transport": "RTP/AVP;unicast;client_port=5000-5001"}
BASE = "rtsp://10.0.0.254:554/"


@functools.cache  # scrypt takes 45 ms a secret: once per module, not once per Hypothesis example
def users() -> object:
    secret = lambda user, pw: make_secret(user, pw, "streamd", salt=b"salt")  # noqa: E731
    return parse_users(
        [
            {
                "name": "alice",
                "password": secret("alice", "a"),
                "permissions": [{"action": "read", "path": "*"}],
            },
            {"name": "bob", "password": secret("bob", "b"), "permissions": [{"action": "read", "path": "*"}]},
            {
                "name": "cam",
                "password": secret("cam", "c"),
                "permissions": [{"action": "publish", "path": "live/*"}],
            },
        ],
        "streamd",
    )


@pytest_asyncio.fixture
async def h(media: Path) -> AsyncIterator[Harness]:
    harness = Harness(media, users=users())
    yield harness
    await harness.close()


class Login:
    """A client with credentials: answers 401s the way players do (retry once with credentials)."""

    def __init__(self, h: Harness, connection: FakeConnection, user: str, password: str) -> None:
        self.h, self.connection = h, connection
        self.client = ClientProtocol(f"rtsp://{user}:{password}@10.0.0.254:554/clip.mp4")

    async def request(
        self, method: str, path: str, headers: dict[str, str] | None = None, **kw: object
    ) -> Response:
        for _ in range(2):
            auth = self.client.request(method, BASE + path).headers.get("Authorization")
            extra = {**(headers or {}), **({"Authorization": auth} if auth else {})}
            response = await self.h.request(self.connection, method, path, extra, **kw)  # type: ignore[arg-type]
            if response.status != 401 or not self.client.authenticate(response):
                return response
        return response


async def test_every_request_needs_credentials_and_sessions_keep_their_user(h: Harness) -> None:
    c = h.connect()
    refused = await h.request(c, "DESCRIBE", "clip.mp4")
    assert refused.status == 401
    offered = refused.headers.getall("WWW-Authenticate")
    assert "SHA-256" in offered[0] and "MD5" in offered[1]
    alice = Login(h, c, "alice", "a")
    assert (await alice.request("DESCRIBE", "clip.mp4")).status == 200
    setup = await alice.request("SETUP", "clip.mp4/trackID=0", UDP)
    assert setup.status == 200
    sid = session_id(setup)
    assert h.server.sessions.get(sid).user == "alice"  # type: ignore[union-attr]
    # the same session id from another connection (same address: a UDP session may move)
    other = h.connect()
    assert (await h.request(other, "PLAY", "clip.mp4", session=sid)).status == 401, "no credentials"
    bob = Login(h, other, "bob", "b")
    stolen = await bob.request("PLAY", "clip.mp4", session=sid)
    assert stolen.status == 454, "another user's session is as good as none"
    assert (await Login(h, other, "alice", "a").request("PLAY", "clip.mp4", session=sid)).status == 200
    wrong = await Login(h, h.connect(), "alice", "nope").request("DESCRIBE", "clip.mp4")
    assert wrong.status == 401


async def test_publishers_need_publish_permission(h: Harness) -> None:
    sdp = {"Content-Type": "application/sdp"}
    reader = Login(h, h.connect(), "alice", "a")
    assert (await reader.request("ANNOUNCE", "live/cam", sdp, body=ANNOUNCED.encode())).status == 403
    cam = Login(h, h.connect(), "cam", "c")
    assert (await cam.request("OPTIONS", "live/cam")).status == 200, "OPTIONS: a publisher's is enough"
    announce = await cam.request("ANNOUNCE", "live/cam", sdp, body=ANNOUNCED.encode())
    assert announce.status == 200
    sid = session_id(announce)
    record = {"Transport": "RTP/AVP/TCP;unicast;interleaved=0-1;mode=record"}
    assert (await cam.request("SETUP", "live/cam/streamid=0", record, session=sid)).status == 200
    assert (await cam.request("RECORD", "live/cam", session=sid)).status == 200
    assert (await cam.request("ANNOUNCE", "other", sdp, body=ANNOUNCED.encode())).status == 403
    # a reader naming the publisher's session is asked for publish rights: 403, not a takeover
    assert (await reader.request("TEARDOWN", "live/cam", session=sid)).status == 403


async def test_options_star_and_defaults(media: Path) -> None:
    h = Harness(media, users=())  # the defaults: reading open, publishing from loopback only
    try:
        c = h.connect("10.0.0.7")
        assert (await h.request(c, "OPTIONS", "*")).status == 200
        assert (await h.request(c, "DESCRIBE", "clip.mp4")).status == 200
        sdp = {"Content-Type": "application/sdp"}
        assert (await h.request(c, "ANNOUNCE", "live/cam", sdp, ANNOUNCED.encode())).status == 403
        local = h.connect("127.0.0.1")
        assert (await h.request(local, "ANNOUNCE", "live/cam", sdp, ANNOUNCED.encode())).status == 200
    finally:
        await h.close()


async def test_connections_without_an_authorized_request_are_closed_after_the_deadline(h: Harness) -> None:
    idle, refused, good = h.connect(), h.connect(), h.connect()
    assert (await h.request(refused, "DESCRIBE", "clip.mp4")).status == 401
    assert (await Login(h, good, "alice", "a").request("DESCRIBE", "clip.mp4")).status == 200
    h.clock.advance(h.server.config.auth_deadline - 1)
    h.server.close_unauthorized(h.clock())
    assert not (idle.closed or refused.closed)
    h.clock.advance(2)
    h.server.close_unauthorized(h.clock())
    assert idle.closed and refused.closed and not good.closed
    assert h.server.auth_metrics()["auth_deadline_closes"] == 2


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.one_of(
        st.text(max_size=300),
        st.builds(lambda rest: "Digest " + rest, st.text(max_size=300)),
        st.builds(lambda rest: "Basic " + rest, st.text(max_size=100)),
    )
)
def test_any_authorization_header_gets_a_clean_401(media: Path, header: str) -> None:
    async def run() -> int:
        h = Harness(media, users=users())
        try:
            header_ok = "\r" not in header and "\n" not in header and "\0" not in header
            return (
                await h.request(
                    h.connect(), "DESCRIBE", "clip.mp4", {"Authorization": header} if header_ok else {}
                )
            ).status
        finally:
            await h.close()

    assert asyncio.run(run()) == 401
