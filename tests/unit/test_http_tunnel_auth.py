"""A tunnel's GET half is authorized before it opens; what it sends meanwhile is held, bounded."""

from __future__ import annotations

import asyncio
import base64

from streamd.auth.model import AuthRequest, AuthResult
from streamd.catalog import Catalog
from streamd.config import ServerConfig
from streamd.http.tunnel import MAX_HELD, TunnelHub
from streamd.server import RtspServer
from tests.unit.test_http_tunnel import FakeTransport, _half

CHALLENGE = ('Digest realm="streamd", nonce="n", algorithm=SHA-256', 'Basic realm="streamd"')


class GatedAuthorizer:
    """Answers when the test says so: allowed when the request carries an Authorization header."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.asked: list[AuthRequest] = []

    async def authorize(self, request: AuthRequest, now: float) -> AuthResult:
        self.asked.append(request)
        await self.gate.wait()
        if request.authorization == "Basic dmlld2VyOnZwYXNz":
            return AuthResult(True, "viewer")
        return AuthResult(False, status=401, challenges=CHALLENGE, reason="login needed")


def _hub() -> tuple[TunnelHub, GatedAuthorizer]:
    authorizer = GatedAuthorizer()
    server = RtspServer(ServerConfig(), Catalog(None, test_stream=None))
    return TunnelHub(server, authorizer), authorizer


def _get(cookie: str = "c00kie", authorization: str | None = "Basic dmlld2VyOnZwYXNz"):  # type: ignore[no-untyped-def]
    request = _half("GET", cookie)
    if authorization:
        request.headers["Authorization"] = authorization
    return request


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_an_allowed_get_opens_with_what_it_sent_meanwhile() -> None:
    hub, authorizer = _hub()
    get = FakeTransport()
    hub.accept(get, _get(), b"")
    await _settle()
    assert get.data == b"" and not hub.tunnels  # nothing answered while the check runs
    assert authorizer.asked[0].action == "read" and authorizer.asked[0].path == "test"
    thief = FakeTransport()  # a POST for a GET not yet allowed finds no tunnel
    hub.accept(thief, _half("POST"), b"")
    assert thief.data.startswith(b"HTTP/1.0 404 ")
    frames = []
    hub.server.interleaved_received = lambda _c, frame: frames.append(frame)  # type: ignore[method-assign]
    get.protocol.data_received(b"$\x01\x00\x02hi")  # type: ignore[union-attr]
    authorizer.gate.set()
    await _settle()
    assert get.data.startswith(b"HTTP/1.1 200 OK\r\n") and "c00kie" in hub.tunnels
    assert [f.payload for f in frames] == [b"hi"]  # the held bytes reached the tunnel
    post = FakeTransport()
    hub.accept(post, _half("POST"), base64.b64encode(b"OPTIONS * RTSP/1.0\r\nCSeq: 1\r\n\r\n"))
    hub.close_all()
    await _settle()


async def test_a_refused_get_gets_the_challenge_and_no_tunnel() -> None:
    hub, authorizer = _hub()
    authorizer.gate.set()
    get = FakeTransport()
    hub.accept(get, _get(authorization=None), b"")
    await _settle()
    assert get.data.startswith(b"HTTP/1.0 401 ")
    assert (
        b'WWW-Authenticate: Digest realm="streamd", nonce="n", algorithm=SHA-256\r\nWWW-Authenticate: Basic'
        in get.data
    )
    assert b"login needed" not in get.data and get.closed and not hub.tunnels and not hub.pending


async def test_a_get_that_leaves_or_floods_during_the_check_opens_nothing() -> None:
    hub, authorizer = _hub()
    gone, flood = FakeTransport(), FakeTransport()
    hub.accept(gone, _get("gone"), b"")
    hub.accept(flood, _get("flood"), b"")
    await _settle()
    gone.closed = True
    flood.protocol.data_received(b"x" * (MAX_HELD + 1))  # type: ignore[union-attr]
    authorizer.gate.set()
    await _settle()
    assert not hub.tunnels and not hub.pending and flood.closed and flood.data == b""


async def test_close_all_cancels_pending_checks() -> None:
    hub, _authorizer = _hub()
    get = FakeTransport()
    hub.accept(get, _get(), b"")
    await _settle()
    hub.close_all()
    await _settle()
    assert not hub.tunnels and not hub._checks and get.closed
