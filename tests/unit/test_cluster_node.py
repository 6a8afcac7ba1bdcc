"""The cluster's rules on an in-memory store with a clock the test moves (Redis's clock): node
registrations and claims expire by the store's clock only (a node's own clock may be off by an
hour), one publisher per path across nodes with fencing tokens, refusals while the store is away,
rejoining when it returns, a dead node's claim not obeyed, balancing to the least-loaded node."""

from __future__ import annotations

import asyncio
import logging

import pytest

from streamd.cluster.memory_store import MemoryStore
from streamd.cluster.node import ClusterNode
from streamd.cluster.store import Claim, NodeInfo
from streamd.rtsp.errors import RtspError


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def make_node(
    store: MemoryStore,
    *,
    skew: float = 0.0,
    load: int = 0,
    draining: bool = False,
    lost: list[tuple[str, str]] | None = None,
) -> ClusterNode:
    own = Clock(store.clock() + skew)  # the node's own wall clock: only shown, never compared
    return ClusterNode(
        store,
        heartbeat=1.0,
        load=lambda: load,
        draining=lambda: draining,
        lost=lambda path, node: (lost if lost is not None else []).append((path, node)),
        clock=own,
    )


async def joined(node: ClusterNode, address: str) -> ClusterNode:
    node.id = address  # start() without its heartbeat task: the test beats by hand
    await node.beat()
    return node


@pytest.mark.parametrize("skew", [-3600.0, 0.0, 3600.0])
async def test_registrations_expire_by_the_stores_clock_whatever_the_nodes_clock(skew: float) -> None:
    clock = Clock()
    store = MemoryStore(clock)
    a = await joined(make_node(store, skew=skew, load=3), "rtsp://a:1")
    b = await joined(make_node(store), "rtsp://b:1")
    assert [n.id for n in b.peers] == ["rtsp://a:1", "rtsp://b:1"]
    assert b.peers[0].load == 3 and b.peers[0].clock == pytest.approx(clock.now + skew)
    clock.now += 2.9  # a misses two heartbeats: still registered (TTL = 3 heartbeats)
    await b.beat()
    assert "rtsp://a:1" in [n.id for n in b.peers]
    clock.now += 0.2  # past a's TTL on the store's clock: gone, whatever a's clock says
    await b.beat()
    assert [n.id for n in b.peers] == ["rtsp://b:1"]
    assert a.available


async def test_one_publisher_per_path_across_nodes() -> None:
    store = MemoryStore(Clock())
    a = await joined(make_node(store), "rtsp://a:1")
    c = await joined(make_node(store), "rtsp://c:1")
    await a.claim("live/x", "s1")
    with pytest.raises(RtspError) as refused:
        await c.claim("live/x", "s9")
    assert refused.value.status == 403 and "rtsp://a:1" in refused.value.reason
    assert (await c.owner("live/x")) == Claim("live/x", "rtsp://a:1", 1)
    a.release("live/x", "s1")
    await asyncio.sleep(0)  # the release runs in a task of its own
    await asyncio.sleep(0)
    assert await c.owner("live/x") is None
    await c.claim("live/x", "s9")
    assert c.claims["live/x"].token == 2  # a new claim, a new fencing token


async def test_local_holders_share_the_claim_until_the_last_leaves() -> None:
    store = MemoryStore(Clock())
    a = await joined(make_node(store), "rtsp://a:1")
    await a.claim("live/x", "s1")
    await a.claim("live/x", "s2")  # a second ANNOUNCE here: the server refuses its RECORD locally
    a.release("live/x", "s2")
    a.release("live/x", "unknown")
    assert "live/x" in a.claims
    a.release("live/x", "s1")
    assert "live/x" not in a.claims


async def test_concurrent_claims_one_winner() -> None:
    store = MemoryStore(Clock())
    nodes = [await joined(make_node(store), f"rtsp://n{i}:1") for i in range(8)]
    results = await asyncio.gather(*(n.claim("live/race", "s") for n in nodes), return_exceptions=True)
    assert sum(r is None for r in results) == 1
    assert all(isinstance(r, RtspError) and r.status == 403 for r in results if r is not None)


async def test_fencing_token_an_old_claim_cannot_renew_or_release_a_new_one() -> None:
    clock = Clock()
    store = MemoryStore(clock)
    await store.register(NodeInfo("rtsp://a:1", "rtsp://a:1"), 3.0)
    old, _ = await store.claim("live/x", "rtsp://a:1", 3.0)
    clock.now += 3.5  # expired
    new, ours = await store.claim("live/x", "rtsp://b:1", 3.0)
    assert ours and new.token > old.token
    assert not await store.renew(old, 3.0)
    await store.release(old)
    await store.register(NodeInfo("rtsp://b:1", "rtsp://b:1"), 3.0)
    assert await store.owner("live/x") == new


async def test_a_dead_nodes_claim_is_not_obeyed_and_expires() -> None:
    clock = Clock()
    store = MemoryStore(clock)
    a = await joined(make_node(store), "rtsp://a:1")
    b = await joined(make_node(store), "rtsp://b:1")
    await a.claim("live/x", "s1")
    assert (await b.owner("live/x")).node == "rtsp://a:1"
    await store.unregister("rtsp://a:1")  # registration gone first (as when Redis evicts it)
    assert await b.owner("live/x") is None  # a claim of an unregistered node is not obeyed
    clock.now += 3.1  # a is dead: no heartbeat renews its claim
    await b.claim("live/x", "s2")
    assert b.claims["live/x"].node == "rtsp://b:1"


async def test_store_away_refuses_what_it_cannot_verify_then_rejoins(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "streamd")
    clock = Clock()
    store = MemoryStore(clock)
    a = await joined(make_node(store), "rtsp://a:1")
    await a.claim("live/kept", "s1")
    store.available = False
    await a.beat()
    await a.beat()
    assert not a.available
    assert sum("store unavailable" in r.message for r in caplog.records) == 1  # said once
    with pytest.raises(RtspError) as refused:
        await a.claim("live/new", "s2")
    assert refused.value.status == 503 and "cluster store unavailable" in refused.value.reason
    with pytest.raises(RtspError) as unknown:
        await a.owner("live/elsewhere")
    assert unknown.value.status == 503
    assert "live/kept" in a.claims  # what it serves, it keeps serving
    store.flush()  # Redis restarted empty
    store.available = True
    await a.beat()
    assert a.available and "rtsp://a:1" in [n.id for n in a.peers]
    assert (await store.owner("live/kept")).node == "rtsp://a:1"  # claimed again
    assert any("registered as rtsp://a:1" in r.message for r in caplog.records)


async def owner_and_other(path: str) -> tuple[Clock, MemoryStore, ClusterNode, ClusterNode, list]:
    """Nodes a (holding ``path``, its losses recorded) and b on one store with a test clock."""
    clock = Clock()
    store = MemoryStore(clock)
    lost: list[tuple[str, str]] = []
    a = await joined(make_node(store, lost=lost), "rtsp://a:1")
    b = await joined(make_node(store), "rtsp://b:1")
    await a.claim(path, "s1")
    return clock, store, a, b, lost


async def test_a_path_taken_elsewhere_while_away_is_lost() -> None:
    clock, store, a, b, lost = await owner_and_other("live/x")
    store.available = False
    await a.beat()
    clock.now += 1.5
    store.available = True  # for b: a alone cannot reach the store (a partition)
    await b.beat()
    clock.now += 2.0  # a's claim expired while a could not renew it; b kept beating
    await b.beat()
    await b.claim("live/x", "s7")  # b could reach the store: its publisher got the path
    await a.beat()
    assert lost == [("live/x", "rtsp://b:1")] and "live/x" not in a.claims


async def test_least_loaded_skips_draining_and_needs_a_margin() -> None:
    store = MemoryStore(Clock())
    me = await joined(make_node(store, load=5), "rtsp://me:1")
    await joined(make_node(store, load=1, draining=True), "rtsp://drain:1")
    await joined(make_node(store, load=3), "rtsp://c:1")
    await me.beat()
    assert me.least_loaded(5, margin=3) is None  # 3 + 3 > 5
    best = me.least_loaded(5, margin=2)
    assert best is not None and best.id == "rtsp://c:1"
    assert me.least_loaded(5, margin=2) is None  # counted as one more already
    assert me.least_loaded(0, margin=None).id == "rtsp://c:1"  # draining: any node that is not
    store.available = False
    await me.beat()
    assert me.least_loaded(50, margin=1) is None  # stale peers are not obeyed


async def test_close_releases_claims_and_unregisters() -> None:
    store = MemoryStore(Clock())
    a = await joined(make_node(store), "rtsp://a:1")
    await a.claim("live/x", "s1")
    await a.close()
    b = await joined(make_node(store), "rtsp://b:1")
    assert [n.id for n in b.peers] == ["rtsp://b:1"] and await b.owner("live/x") is None


async def test_a_drain_is_registered_at_once_not_at_the_next_heartbeat() -> None:
    store = MemoryStore(Clock())
    draining = False
    node = ClusterNode(store, heartbeat=3600.0, load=lambda: 0, draining=lambda: draining, lost=print)
    await node.start("rtsp://a:1")
    try:
        assert not (await store.nodes())[0].draining
        draining = True
        for _ in range(200):
            if (await store.nodes())[0].draining:
                break
            await asyncio.sleep(0.01)
        assert (await store.nodes())[0].draining
    finally:
        await node.close()


async def test_a_node_started_without_its_store_serves_and_joins_later() -> None:
    store = MemoryStore(Clock())
    store.available = False
    node = make_node(store)
    await node.start("rtsp://a:1")  # not fatal: the server serves what needs no cluster
    try:
        assert not node.available
        with pytest.raises(RtspError) as refused:
            await node.claim("live/x", "s1")
        assert refused.value.status == 503
        store.available = True
        await node.beat()
        assert node.available and [n.id for n in await store.nodes()] == ["rtsp://a:1"]
        await node.claim("live/x", "s1")
    finally:
        await node.close()


async def test_after_the_store_restarted_empty_owners_claim_their_paths_first(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A Redis restarted without persistence forgets every claim: the first node to notice holds
    new claims for two heartbeats, so a publisher on another node cannot take a path from its live
    publisher before the owner's next heartbeat claims it again."""
    caplog.set_level(logging.INFO, "streamd")
    clock, store, a, c, lost = await owner_and_other("live/steady")
    store.flush()  # Redis restarted empty
    await c.beat()  # c notices first: the store had lost it
    assert any("new publishers wait 2 s" in r.message for r in caplog.records)
    with pytest.raises(RtspError) as refused:
        await c.claim("live/steady", "s9")
    assert refused.value.status == 503 and "claim their paths again" in refused.value.reason
    clock.now += 0.9
    await a.beat()  # the owner's next heartbeat: its path is claimed again
    assert "live/steady" in a.claims and not lost
    with pytest.raises(RtspError) as busy:
        await c.claim("live/steady", "s9")
    assert busy.value.status == 403
    with pytest.raises(RtspError):
        await c.claim("live/new", "s10")  # still held: another owner may not have beaten yet
    clock.now += 2.0
    await c.claim("live/new", "s10")  # the window is over
    assert c.claims["live/new"].node == "rtsp://b:1"


async def test_before_any_node_registered_again_new_claims_wait_too() -> None:
    """Redis restarted empty and a publisher announces before any node's heartbeat could notice:
    the store holds no sign that a node registered since it began, so it takes no new claim
    (503) until one has; then the first forgotten node's hold follows, and the owner re-claims."""
    clock, store, a, c, lost = await owner_and_other("live/steady")
    store.flush()  # Redis restarted empty; no heartbeat yet
    for path in ("live/steady", "live/other"):
        with pytest.raises(RtspError) as refused:
            await c.claim(path, "s9")
        assert refused.value.status == 503 and "claim their paths again" in refused.value.reason
    await a.beat()  # the owner notices first: its path is claimed again, new claims held
    assert "live/steady" in a.claims and not lost
    with pytest.raises(RtspError) as busy:
        await c.claim("live/steady", "s9")
    assert busy.value.status == 403
    clock.now += 2.1
    await c.claim("live/other", "s10")


async def test_a_node_that_joins_for_the_first_time_holds_no_claims() -> None:
    store = MemoryStore(Clock())
    await joined(make_node(store), "rtsp://a:1")
    b = await joined(make_node(store), "rtsp://b:1")
    await b.claim("live/x", "s1")  # a new node is not a store that lost its state
