"""RTSP over HTTP pairing, without sockets: fake transports stand in for the GET and POST connections."""

from __future__ import annotations

import asyncio
import base64
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamd.catalog import Catalog
from streamd.config import ServerConfig
from streamd.http.tunnel import TUNNEL_CONTENT_TYPE, TunnelHub, is_tunnel_request
from streamd.rtsp.message import Request
from streamd.server import RtspServer


class FakeTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.data = bytearray()
        self.closed = False
        self.protocol: asyncio.BaseProtocol | None = None

    def write(self, data: Any) -> None:
        assert not self.closed
        self.data += data

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self.protocol = protocol

    def get_protocol(self) -> asyncio.BaseProtocol:
        assert self.protocol is not None
        return self.protocol

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            assert self.protocol is not None
            asyncio.get_running_loop().call_soon(self.protocol.connection_lost, None)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 50000), "sockname": ("127.0.0.1", 8554)}.get(name, default)

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return 0


def _half(method: str, cookie: str = "c00kie") -> Request:
    headers = {"x-sessioncookie": cookie}
    if method == "POST":
        headers["Content-Type"] = TUNNEL_CONTENT_TYPE
    return Request(method, "/test", "HTTP/1.1", headers)


def _hub() -> tuple[TunnelHub, RtspServer]:
    server = RtspServer(ServerConfig(), Catalog(None, test_stream=None))
    return TunnelHub(server), server


async def test_post_requests_are_answered_on_the_get_connection() -> None:
    hub, server = _hub()
    get, post = FakeTransport(), FakeTransport()
    hub.accept(get, _half("GET"), b"")
    head = bytes(get.data)
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert f"Content-Type: {TUNNEL_CONTENT_TYPE}".encode() in head
    assert b"Content-Length" not in head and b"chunked" not in head  # a raw, endless body
    text = base64.b64encode(b"OPTIONS rtsp://h/test RTSP/1.0\r\nCSeq: 1\r\n\r\n")
    text += base64.b64encode(b"OPTIONS rtsp://h/test RTSP/1.0\r\nCSeq: 2\r\n\r\n")
    hub.accept(post, _half("POST"), text[:7])  # bytes after the POST head arrive with it
    assert post.protocol is not None
    post.protocol.data_received(text[7:])  # type: ignore[attr-defined]
    for _ in range(100):
        await asyncio.sleep(0.01)
        if b"CSeq: 2" in get.data:
            break
    rtsp = bytes(get.data[len(head) :])
    assert rtsp.startswith(b"RTSP/1.0 200 OK\r\n") and b"CSeq: 1\r\n" in rtsp and b"CSeq: 2\r\n" in rtsp
    assert post.data == b""  # the POST is never answered
    assert len(server.connections) == 1
    get.close()
    await asyncio.sleep(0.01)
    assert post.closed and not hub.tunnels and not server.connections


async def test_unknown_cookie_bad_cookie_and_duplicate_get_are_refused() -> None:
    hub, _server = _hub()
    post = FakeTransport()
    hub.accept(post, _half("POST", "nobody"), b"")
    assert post.data.startswith(b"HTTP/1.0 404 ") and post.closed
    bad = FakeTransport()
    hub.accept(bad, _half("GET", "has space"), b"")
    assert bad.data.startswith(b"HTTP/1.0 400 ") and bad.closed
    first, second = FakeTransport(), FakeTransport()
    hub.accept(first, _half("GET"), b"")
    hub.accept(second, _half("GET"), b"")
    assert second.data.startswith(b"HTTP/1.0 409 ") and not first.closed
    hub.close_all()
    await asyncio.sleep(0.01)
    assert first.closed


async def test_garbage_in_the_post_body_ends_the_tunnel() -> None:
    hub, _server = _hub()
    get, post = FakeTransport(), FakeTransport()
    hub.accept(get, _half("GET"), b"")
    hub.accept(post, _half("POST"), b"not base64!")
    await asyncio.sleep(0.01)
    assert get.closed and post.closed and not hub.tunnels


def test_only_requests_with_a_cookie_are_tunnels() -> None:
    assert is_tunnel_request(_half("GET"))
    assert not is_tunnel_request(Request("GET", "/", "HTTP/1.1"))
    assert not is_tunnel_request(Request("PUT", "/", "HTTP/1.1", {"x-sessioncookie": "a"}))


async def test_interleaved_frames_on_the_get_side_reach_the_rtsp_connection() -> None:
    """live555 clients send RTCP receiver reports as ``$`` frames on the GET connection."""
    hub, server = _hub()
    frames: list[tuple[object, int, bytes]] = []
    server.interleaved_received = lambda conn, frame: frames.append((conn, frame.channel, frame.payload))  # type: ignore[method-assign]
    get = FakeTransport()
    rr = b"\x80\xc9\x00\x01\x00\x00\x00\x01"
    hub.accept(get, _half("GET"), b"$\x01\x00\x08" + rr[:3])  # bytes right after the GET head count too
    tunnel = hub.tunnels["c00kie"]
    tunnel.connection.last_activity = 0.0
    get_side = get.protocol
    assert get_side is not None
    get_side.data_received(rr[3:] + b"$\x03\x00\x02ab")  # type: ignore[attr-defined]
    assert frames == [(tunnel.connection, 1, rr), (tunnel.connection, 3, b"ab")]
    assert tunnel.connection.last_activity > 0
    get_side.data_received(b"GARBAGE\r\n\r\n$\x01\x00\x02xy")  # type: ignore[attr-defined]
    assert len(frames) == 3 and frames[2][2] == b"xy" and not get.closed  # garbage skipped, frames kept
    hub.close_all()
    await asyncio.sleep(0.01)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(chunks=st.lists(st.binary(max_size=200), max_size=10))
def test_anything_on_the_get_side_is_harmless(chunks: list[bytes]) -> None:
    async def run() -> None:
        hub, server = _hub()
        server.interleaved_received = lambda conn, frame: None  # type: ignore[method-assign]
        get = FakeTransport()
        hub.accept(get, _half("GET"), b"")
        for chunk in chunks:
            get.get_protocol().data_received(chunk)  # type: ignore[attr-defined]
        assert not get.closed
        hub.close_all()
        await asyncio.sleep(0)

    asyncio.run(run())


class PeerTransport(FakeTransport):
    def __init__(self, host: str) -> None:
        super().__init__()
        self.host = host

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "peername":
            return (self.host, 40000)
        return super().get_extra_info(name, default)


def _hub_with(**settings: Any) -> TunnelHub:
    return TunnelHub(RtspServer(ServerConfig(**settings), Catalog(None, test_stream=None)))


async def test_waiting_gets_are_bounded_per_client_and_expire() -> None:
    hub = _hub_with(max_tunnel_pending_per_client=3, tunnel_pairing_timeout=0.05)
    mine = [PeerTransport("10.0.0.1") for _ in range(4)]
    for i, get in enumerate(mine):
        hub.accept(get, _half("GET", f"mine{i}"), b"")
    assert [g.data.startswith(b"HTTP/1.1 200") for g in mine] == [True, True, True, False]
    assert mine[3].data.startswith(b"HTTP/1.0 503 ") and b"waiting for their POST" in mine[3].data
    other = PeerTransport("10.0.0.2")
    hub.accept(other, _half("GET", "theirs"), b"")  # another client is not locked out
    assert other.data.startswith(b"HTTP/1.1 200")
    post = PeerTransport("10.0.0.2")
    hub.accept(post, _half("POST", "theirs"), b"")  # paired: it no longer waits, nor expires
    await asyncio.sleep(0.2)
    assert all(g.closed for g in mine) and not other.closed and not post.closed
    assert not hub.pending and list(hub.tunnels) == ["theirs"]
    again = PeerTransport("10.0.0.1")
    hub.accept(again, _half("GET", "mine-again"), b"")  # expired halves no longer count
    assert again.data.startswith(b"HTTP/1.1 200")
    hub.close_all()
    await asyncio.sleep(0.01)
    assert not hub.pending


async def test_a_post_joins_only_a_get_from_its_own_address() -> None:
    hub = _hub_with()
    get, victim_post = PeerTransport("10.0.0.1"), PeerTransport("10.0.0.1")
    hub.accept(get, _half("GET", "victim"), b"")
    hub.accept(victim_post, _half("POST", "victim"), b"")
    thief = PeerTransport("10.0.0.9")
    hub.accept(thief, _half("POST", "victim"), base64.b64encode(b"OPTIONS * RTSP/1.0\r\nCSeq: 1\r\n\r\n"))
    assert thief.data.startswith(b"HTTP/1.0 403 ") and thief.closed
    tunnel = hub.tunnels["victim"]
    assert tunnel.post is victim_post and not victim_post.closed
    hub.close_all()
    await asyncio.sleep(0.01)
