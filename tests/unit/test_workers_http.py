"""HTTP requests across worker processes, without processes or sockets: which requests belong to
which worker (:mod:`streamd.workers.http_owner`), and the header rules of forwarding them
(:mod:`streamd.workers.http_forward`): hop-by-hop headers dropped, the client's address carried,
and believed only on the private socket."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from unittest import mock

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request
from hypothesis import given
from hypothesis import strategies as st

from streamd.config import PathSettings, ServerConfig
from streamd.workers.http_forward import (
    CLIENT_HEADER,
    PROTO_HEADER,
    forwarded_client,
    middleware,
    request_headers,
    response_headers,
)
from streamd.workers.http_owner import Placement, Target, clean_path, target_of
from streamd.workers.ownership import Owner

# --- which worker -------------------------------------------------------------------------------


def test_targets_of_the_routes_that_name_something_one_worker_holds() -> None:
    assert target_of("POST", "/whep/{path}", {"path": "live/cam"}) == Target("path", "live/cam")
    assert target_of("POST", "/whep/{path}", {"path": "live//./cam/"}) == Target("path", "live/cam")
    assert target_of("DELETE", "/whep-session/{id}", {"id": "abc"}) == Target("webrtc", "abc")
    assert target_of("PATCH", "/whip-session/{id}", {"id": "abc"}) == Target("webrtc", "abc")
    hls = {"path": "live/cam", "rendition": "main", "name": "media.m3u8"}
    assert target_of("GET", "/hls/{path}/{rendition}/{name}", hls) == Target("path", "live/cam")
    assert target_of("HEAD", "/hls/{path}/index.m3u8", {"path": "live/cam"}) == Target("path", "live/cam")


def test_other_requests_stay_where_they_landed() -> None:
    assert target_of("POST", "/whip/{path}", {"path": "live/cam"}) is None  # claims, never forwarded
    assert target_of("OPTIONS", "/whep/{path}", {"path": "live/cam"}) is None  # preflights
    assert target_of("OPTIONS", "/whep-session/{id}", {"id": "abc"}) is None
    assert target_of("GET", "/mp4/{path}", {"path": "live/cam"}) is None  # relayed, not forwarded
    assert target_of("GET", "/metrics", {}) is None
    assert target_of("POST", "/whep/{path}", {"path": "live/../secret"}) is None  # the route's 404
    assert target_of("DELETE", "/whep-session/{id}", {"id": "x" * 300}) is None


@given(st.text(max_size=300))
def test_clean_path_never_leaves_dot_dot_or_empty_segments(raw: str) -> None:
    path = clean_path(raw)
    if path is not None:
        assert path and all(part not in ("", ".", "..") for part in path.split("/"))


@dataclass
class FakeLive:
    online: bool = True


@dataclass
class FakeSiblings:
    relays: set[int] = field(default_factory=set)

    def is_relay(self, live: FakeLive) -> bool:
        return id(live) in self.relays


@dataclass
class FakePaths:
    config: ServerConfig = field(default_factory=ServerConfig)
    live: dict[str, FakeLive] = field(default_factory=dict)
    siblings: FakeSiblings = field(default_factory=FakeSiblings)


class FakeOwners:
    def __init__(self, owners: dict[str, Owner]) -> None:
        self.owners = owners
        self.asked: list[str] = []

    async def claim(self, path: str, holder: str) -> Owner | None:
        return None

    def release(self, path: str, holder: str) -> None:
        pass

    async def owner(self, path: str) -> Owner | None:
        self.asked.append(path)
        return self.owners.get(path)


def placed(
    target: Target,
    *,
    paths: FakePaths | None = None,
    owners: dict[str, Owner] | None = None,
    held: frozenset[tuple[str, str]] = frozenset(),
    elsewhere: dict[tuple[str, str], int] | None = None,
    me: int = 0,
) -> tuple[int | None, FakeOwners, list[tuple[str, str]]]:
    table = FakeOwners(owners or {})
    asked: list[tuple[str, str]] = []

    async def find(kind: str, key: str) -> int | None:
        asked.append((kind, key))
        return (elsewhere or {}).get((kind, key))

    placement = Placement(me, paths or FakePaths(), table, find, lambda kind, key: (kind, key) in held)
    answer = asyncio.run(placement.worker_for(target))
    return answer, table, asked


def test_a_path_published_here_is_served_here_without_asking_anyone() -> None:
    paths = FakePaths(live={"live/cam": FakeLive()})
    answer, table, asked = placed(Target("path", "live/cam"), paths=paths, owners={"live/cam": Owner(1, "s")})
    assert answer is None and table.asked == [] and asked == []


def test_a_path_published_in_a_sibling_goes_there_even_when_relayed_here() -> None:
    relay = FakeLive()
    paths = FakePaths(live={"live/cam": relay}, siblings=FakeSiblings({id(relay)}))
    answer, _, _ = placed(Target("path", "live/cam"), paths=paths, owners={"live/cam": Owner(1, "s")})
    assert answer == 1
    assert placed(Target("path", "live/cam"), owners={"live/cam": Owner(0, "s")})[0] is None  # ours
    assert placed(Target("path", "live/cam"), owners={"live/cam": Owner(-1, "table full")})[0] is None


def test_files_and_configured_relays_never_ask() -> None:
    answer, table, _ = placed(Target("path", "clip.mp4"), owners={"clip.mp4": Owner(1, "s")})
    assert answer is None and table.asked == []  # not a publishable path: a file, served anywhere
    config = ServerConfig(paths={"live/cam": PathSettings(source="rtsp://upstream/cam")})
    answer, table, _ = placed(Target("path", "live/cam"), paths=FakePaths(config=config))
    assert answer is None and table.asked == []  # each worker pulls its own upstream


def test_an_offline_path_goes_to_the_worker_holding_its_ended_hls_stream() -> None:
    target = Target("path", "live/cam")
    answer, _, asked = placed(target, elsewhere={("hls", "live/cam"): 1})
    assert answer == 1 and asked == [("hls", "live/cam")]
    answer, _, asked = placed(
        target, held=frozenset({("hls", "live/cam")}), elsewhere={("hls", "live/cam"): 1}
    )
    assert answer is None and asked == []  # we hold it ourselves
    assert placed(target)[0] is None  # nobody: here (404)


def test_a_webrtc_session_goes_to_the_worker_holding_it() -> None:
    target = Target("webrtc", "abc")
    answer, _, asked = placed(target, elsewhere={("webrtc", "abc"): 1})
    assert answer == 1 and asked == [("webrtc", "abc")]
    answer, _, asked = placed(target, held=frozenset({("webrtc", "abc")}), elsewhere={("webrtc", "abc"): 1})
    assert answer is None and asked == []
    assert placed(target)[0] is None  # nobody holds it: our 404


# --- headers ------------------------------------------------------------------------------------


def test_forwarded_requests_lose_hop_by_hop_headers_and_carry_the_client() -> None:
    headers = [
        ("Host", "example.org:8080"),
        ("Connection", "keep-alive, X-Private"),
        ("Keep-Alive", "timeout=5"),
        ("X-Private", "hop"),
        ("Transfer-Encoding", "chunked"),
        ("Authorization", "Bearer t"),
        ("Accept", "a"),
        ("Accept", "b"),
        (CLIENT_HEADER, "10.0.0.66"),  # the client's own claim: dropped
        (PROTO_HEADER.upper(), "https"),
    ]
    assert request_headers(headers, "192.0.2.7", False) == [
        ("Host", "example.org:8080"),
        ("Authorization", "Bearer t"),
        ("Accept", "a"),
        ("Accept", "b"),
        (CLIENT_HEADER, "192.0.2.7"),
        (PROTO_HEADER, "http"),
    ]


def test_responses_keep_every_challenge_and_lose_hop_by_hop_headers() -> None:
    headers = [
        ("Content-Type", "text/plain"),
        ("WWW-Authenticate", 'Digest realm="streamd"'),
        ("WWW-Authenticate", 'Basic realm="streamd"'),
        ("Transfer-Encoding", "chunked"),
        ("Connection", "close"),
    ]
    assert response_headers(headers) == headers[:3]


def test_the_client_header_is_an_address_or_nothing() -> None:
    assert forwarded_client({CLIENT_HEADER: "192.0.2.7", PROTO_HEADER: "https"}) == ("192.0.2.7", "https")
    assert forwarded_client({CLIENT_HEADER: " ::1 ", PROTO_HEADER: "HTTP"}) == ("::1", "http")
    assert forwarded_client({CLIENT_HEADER: "evil, 1.2.3.4"}) == ("", "http")
    assert forwarded_client({}) == ("", "http")


@given(st.text(max_size=100), st.text(max_size=20))
def test_any_forwarded_header_text_is_parsed_without_error(client: str, proto: str) -> None:
    address, scheme = forwarded_client({CLIENT_HEADER: client, PROTO_HEADER: proto})
    assert scheme in ("http", "https")
    assert address == "" or address == address.strip()


@given(st.lists(st.tuples(st.sampled_from(["Connection", "TE", "Upgrade", "X-A", CLIENT_HEADER]), st.text())))
def test_our_headers_are_always_the_last_two_and_only_ours(headers: list[tuple[str, str]]) -> None:
    out = request_headers(headers, "192.0.2.7", True)
    assert out[-2:] == [(CLIENT_HEADER, "192.0.2.7"), (PROTO_HEADER, "https")]
    assert all(name.lower() not in ("connection", "te", "upgrade") for name, _ in out)
    assert sum(1 for name, _ in out if name.lower() == CLIENT_HEADER.lower()) == 1


# --- the middleware: believed on the private socket only ----------------------------------------


def _request(sockname: object, headers: dict[str, str]) -> web.Request:
    transport = mock.Mock()
    transport.get_extra_info = lambda name, default=None: {
        "sockname": sockname,
        "peername": ("203.0.113.9", 5555) if sockname != "/run/w-0-http.sock" else "",
    }.get(name, default)
    return make_mocked_request("GET", "/hls/live/cam/index.m3u8", headers=headers, transport=transport)


def _seen(request: web.Request, placed_on: int | None) -> tuple[str | None, bool, list[web.Request]]:
    forwarded: list[web.Request] = []

    class Forwarder:
        me = 0

        async def forward(self, req: web.Request, worker: int) -> web.StreamResponse:
            forwarded.append(req)
            return web.Response(status=299)

    async def place(req: web.Request) -> int | None:
        return placed_on

    seen: list[web.Request] = []

    async def handler(req: web.Request) -> web.StreamResponse:
        seen.append(req)
        return web.Response()

    route = middleware(Path("/run/w-0-http.sock"), place, Forwarder())  # type: ignore[arg-type]
    asyncio.run(route(request, handler))
    if not seen:
        return None, False, forwarded
    return seen[0].remote, seen[0].secure, forwarded


def test_a_request_from_a_sibling_is_the_clients_and_is_never_forwarded_again() -> None:
    headers = {CLIENT_HEADER: "192.0.2.7", PROTO_HEADER: "https"}
    assert _seen(_request("/run/w-0-http.sock", headers), placed_on=1)[:2] == ("192.0.2.7", True)


def test_the_headers_are_ignored_on_the_public_ports() -> None:
    headers = {CLIENT_HEADER: "192.0.2.7", PROTO_HEADER: "https"}
    assert _seen(_request(("127.0.0.1", 8080), headers), placed_on=None)[:2] == ("203.0.113.9", False)
    remote, _, forwarded = _seen(_request(("127.0.0.1", 8080), headers), placed_on=1)
    assert remote is None and len(forwarded) == 1
    assert _seen(_request(("127.0.0.1", 8080), headers), placed_on=0)[0] == "203.0.113.9"  # ourselves


# --- WHIP publishers claim their path across workers --------------------------------------------


class RefusingOwners(FakeOwners):
    """A sibling worker publishes every path."""

    def __init__(self) -> None:
        super().__init__({})
        self.claims: list[tuple[str, str]] = []
        self.released: list[tuple[str, str]] = []

    async def claim(self, path: str, holder: str) -> Owner | None:
        self.claims.append((path, holder))
        return Owner(1, "someone")

    def release(self, path: str, holder: str) -> None:
        self.released.append((path, holder))


def test_a_whip_offer_for_a_path_published_in_a_sibling_gets_409_before_any_port_is_taken() -> None:
    from streamd.rtsp.errors import RtspError
    from streamd.webrtc.whip import WhipService
    from tests.unit.test_webrtc_negotiate import CHROME_OFFER

    server = mock.Mock(config=ServerConfig(), live={})
    whip = WhipService(server)
    whip.owners = owners = RefusingOwners()
    offer = CHROME_OFFER.replace("a=recvonly", "a=sendonly")
    with mock.patch("streamd.webrtc.whip.Peer") as peer, pytest.raises(RtspError) as refused:
        asyncio.run(whip.create("live/cam", offer, "192.0.2.7"))
    assert refused.value.status == 409
    assert [path for path, _ in owners.claims] == ["live/cam"]
    assert not peer.called and not whip.sessions
