"""The cluster's hooks in the composed server (the in-process harness, an in-memory store):
ANNOUNCE claims the path (403 when another node holds it, 503 while the store is away), the
claim goes when the publisher's session ends, a path lost to another node ends our publisher,
``cluster_mode = "redirect"`` and ``cluster_balance`` answer 302, and a drain to nowhere sends
new players to a node that is not draining."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest_asyncio

from streamd.cluster.memory_store import MemoryStore
from streamd.cluster.store import NodeInfo
from streamd.config import PathSettings
from tests.unit.harness import ANNOUNCED, FakeClock, Harness, session_id

SDP = {"Content-Type": "application/sdp"}
ME, PEER = "rtsp://10.0.0.254:554", "rtsp://10.0.0.9:554"


class Node:
    """The harness's server joined to an in-memory cluster, and a peer registered beside it."""

    def __init__(self, media: Path, **settings: object) -> None:
        self.clock = FakeClock()  # the store's clock
        self.store = MemoryStore(self.clock)
        self.h = Harness(media, cluster="redis://127.0.0.1:1/0", cluster_heartbeat=1.0, **settings)
        assert self.h.server.cluster is not None
        self.node = self.h.server.cluster.node
        self.node.store = self.store

    async def join(self, peer_load: int = 0, peer_draining: bool = False) -> None:
        await self.store.register(NodeInfo(PEER, PEER, peer_load, peer_draining), 60)
        self.node.id = ME
        await self.node.beat()

    async def close(self) -> None:
        await self.h.close()
        await self.node.close()


@pytest_asyncio.fixture
async def n(media: Path) -> AsyncIterator[Node]:
    node = Node(media)
    await node.join()
    yield node
    await node.close()


async def test_announce_claims_and_the_sessions_end_releases(n: Node) -> None:
    c = n.h.connect()
    announce = await n.h.request(c, "ANNOUNCE", "live/cam", SDP, ANNOUNCED.encode())
    assert announce.status == 200
    assert (await n.store.owner("live/cam")).node == ME
    await n.h.request(c, "TEARDOWN", "live/cam", session=session_id(announce))
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert await n.store.owner("live/cam") is None


async def test_a_path_held_elsewhere_is_403_and_an_unverifiable_claim_503(n: Node) -> None:
    await n.store.claim("live/cam", PEER, 60)
    busy = await n.h.request(n.h.connect(), "ANNOUNCE", "live/cam", SDP, ANNOUNCED.encode())
    assert busy.status == 403 and busy.body == b"busy\n"
    n.store.available = False
    away = await n.h.request(n.h.connect(), "ANNOUNCE", "live/other", SDP, ANNOUNCED.encode())
    assert away.status == 503 and b"cluster store unavailable" in away.body
    assert len(n.h.server.sessions) == 0  # nothing half-made is left


async def test_a_path_lost_to_another_node_ends_our_publisher(n: Node) -> None:
    c = n.h.connect()
    announce = await n.h.request(c, "ANNOUNCE", "live/cam", SDP, ANNOUNCED.encode())
    assert announce.status == 200
    n.store.available = False
    await n.node.beat()
    n.clock.advance(10)  # our claim expired while we could not renew it ...
    n.store.available = True
    await n.store.register(NodeInfo(PEER, PEER), 60)
    await n.store.claim("live/cam", PEER, 60)  # ... and the peer's publisher got the path
    await n.node.beat()
    await n.h.server.lifecycle.wait()
    assert session_id(announce) not in n.h.server.sessions


async def test_redirect_mode_302_to_the_owner(media: Path) -> None:
    node = Node(media, paths={"live/*": PathSettings(cluster_mode="redirect")})
    try:
        await node.join()
        await node.store.claim("live/cam", PEER, 60)
        moved = await node.h.request(node.h.connect(), "DESCRIBE", "live/cam")
        assert moved.status == 302 and moved.headers["Location"] == f"{PEER}/live/cam"
        setup = await node.h.request(node.h.connect(), "SETUP", "live/cam/trackID=0")
        assert setup.status == 302 and setup.headers["Location"] == f"{PEER}/live/cam/trackID=0"
        assert (await node.h.request(node.h.connect(), "DESCRIBE", "live/nobody")).status == 404
    finally:
        await node.close()


async def test_balancing_sends_new_players_to_the_least_loaded_node(media: Path) -> None:
    node = Node(media, cluster_balance=True, cluster_balance_margin=1)
    try:
        await node.join(peer_load=0)
        c = node.h.connect()
        first = await node.h.request(c, "DESCRIBE", "clip.mp4")
        assert first.status == 200  # 0 sessions here: nothing to balance
        setup = await node.h.request(
            c, "SETUP", "clip.mp4/trackID=0", {"Transport": "RTP/AVP/TCP;interleaved=0-1"}
        )
        assert setup.status == 200
        moved = await node.h.request(node.h.connect(), "DESCRIBE", "clip.mp4")
        assert moved.status == 302 and moved.headers["Location"] == f"{PEER}/clip.mp4"
        # the peer now counts one more: the next is served here
        assert (await node.h.request(node.h.connect(), "DESCRIBE", "clip.mp4")).status == 200
        track = await node.h.request(c, "SETUP", "clip.mp4/trackID=1", session=session_id(setup))
        assert track.status != 302  # a track added to a session stays
    finally:
        await node.close()


async def test_draining_to_nowhere_sends_new_players_to_a_node_not_draining(n: Node) -> None:
    n.h.server.relocator.relocations.drain(())
    await n.node.beat()
    assert any(p.id == ME and p.draining for p in n.node.peers)  # the store knows we drain
    moved = await n.h.request(n.h.connect(), "DESCRIBE", "clip.mp4")
    assert moved.status == 302 and moved.headers["Location"] == f"{PEER}/clip.mp4"
    await n.store.register(NodeInfo(PEER, PEER, 0, True), 60)  # the peer drains too
    await n.node.beat()
    assert (await n.h.request(n.h.connect(), "DESCRIBE", "clip.mp4")).status == 503
