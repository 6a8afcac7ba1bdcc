"""A machine of worker processes is one cluster node (streamd.cluster.machine, .via_parent): the
parent registers once with every worker's sessions summed, claims for any of its workers, lets go
of what a dead worker published, tells the worker whose path another node took; a worker's side
turns the parent's answers back into the statuses a single node gives, and balances with the
machine's load."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from streamd.cluster.machine import MachineNode
from streamd.cluster.memory_store import MemoryStore
from streamd.cluster.store import NodeInfo
from streamd.cluster.via_parent import ParentNode
from streamd.config import ServerConfig
from streamd.rtsp.errors import RtspError
from tests.unit.test_cluster_node import Clock, joined, make_node


class FakeChannel:
    """A worker's channel as the parent sees it: answers ``cluster_load``, keeps what is sent."""

    def __init__(self, load: int) -> None:
        self.load = load
        self.sent: list[dict[str, Any]] = []

    async def request(self, op: str, **args: Any) -> Any:
        assert op == "cluster_load"
        return self.load

    def send(self, message: dict[str, Any]) -> None:
        self.sent.append(message)


def machine(store: MemoryStore, channels: dict[int, FakeChannel]) -> MachineNode:
    config = ServerConfig(cluster="redis://r/0", host="10.0.0.2", rtsp_port=8554, cluster_heartbeat=1.0)
    return MachineNode(config, lambda: channels, lambda: False, lambda: ["live/pulled"], store=store)  # type: ignore[arg-type, return-value]


async def settle() -> None:
    for _ in range(3):
        await asyncio.sleep(0)


async def test_one_registration_with_every_workers_load() -> None:
    store = MemoryStore(Clock())
    channels = {0: FakeChannel(3), 1: FakeChannel(4)}
    node = machine(store, channels)
    await node.refresh_loads()
    await node.node.beat()
    assert [(n.id, n.load) for n in await store.nodes()] == [("rtsp://10.0.0.2:8554", 7)]
    node.push_view()
    view = channels[1].sent[-1]["view"]
    assert view["loads"] == {"0": 3, "1": 4} and view["edge_relays"] == ["live/pulled"]
    del channels[0]  # worker 0 gone: its load no longer counts
    await node.refresh_loads()
    assert node.loads == {1: 4}


async def test_claims_for_any_worker_and_a_dead_workers_are_released() -> None:
    store = MemoryStore(Clock())
    channels = {0: FakeChannel(0), 1: FakeChannel(0)}
    node = machine(store, channels)
    await node.node.beat()
    other = await joined(make_node(store), "rtsp://10.0.0.3:8554")
    assert await node.handle(1, {"op": "cluster_claim", "path": "live/x", "holder": "s1"}) is None
    with pytest.raises(RtspError) as refused:
        await other.claim("live/x", "s9")
    assert refused.value.status == 403
    refusal = await node.handle(0, {"op": "cluster_owner", "path": "live/x"})
    assert refusal == {"node": "rtsp://10.0.0.2:8554", "token": 1}
    node.worker_gone(1)
    await settle()
    assert await store.owner("live/x") is None
    await other.claim("live/x", "s9")
    refusal = await node.handle(0, {"op": "cluster_claim", "path": "live/x", "holder": "s2"})
    assert refusal["status"] == 403 and "rtsp://10.0.0.3:8554" in refusal["reason"]
    assert refusal["body"] == "busy\n"


async def test_a_path_taken_by_another_node_ends_the_holding_workers_publisher() -> None:
    clock = Clock()
    store = MemoryStore(clock)
    channels = {0: FakeChannel(0), 1: FakeChannel(0)}
    node = machine(store, channels)
    await node.node.beat()
    await node.handle(1, {"op": "cluster_claim", "path": "live/x", "holder": "s1"})
    store.available = False  # cut off past the claim's TTL; another node takes the path
    await node.node.beat()
    clock.now += 10
    store.available = True
    other = await joined(make_node(store), "rtsp://10.0.0.3:8554")
    await other.claim("live/x", "s9")
    await node.node.beat()
    lost = [m for m in channels[1].sent if m["op"] == "cluster_lost"]
    assert lost == [{"op": "cluster_lost", "path": "live/x", "node": "rtsp://10.0.0.3:8554"}]
    assert not [m for m in channels[0].sent if m["op"] == "cluster_lost"]


async def test_a_workers_side_gives_the_statuses_of_a_single_node() -> None:
    answers: dict[str, Any] = {}
    sent: list[dict[str, Any]] = []

    async def request(op: str, **args: Any) -> Any:
        return answers[op]

    lost: list[tuple[str, str]] = []
    worker = ParentNode(
        request, sent.append, index=0, heartbeat=1.0, load=lambda: 5, lost=lambda p, n: lost.append((p, n))
    )
    answers["cluster_claim"] = {"status": 503, "reason": "cluster store unavailable", "body": "later\n"}
    with pytest.raises(RtspError) as refused:
        await worker.claim("live/x", "s1")
    assert (refused.value.status, refused.value.body) == (503, "later\n")
    answers["cluster_owner"] = {"node": "rtsp://b:1", "token": 4}
    assert (await worker.owner("live/x")).token == 4  # type: ignore[union-attr]
    worker.release("live/x", "s1")
    assert sent == [{"op": "cluster_release", "path": "live/x", "holder": "s1"}]
    assert worker.handle({"op": "cluster_load"}) == 5
    worker.handle({"op": "cluster_lost", "path": "live/x", "node": "rtsp://b:1"})
    assert lost == [("live/x", "rtsp://b:1")]
    # balancing counts the machine's load: this worker's 5 plus its sibling's 4
    peers = [NodeInfo("rtsp://a:1", "rtsp://a:1", 9), NodeInfo("rtsp://b:1", "rtsp://b:1", 6)]
    view = {"id": "rtsp://a:1", "available": True, "peers": [p.__dict__ for p in peers], "loads": {"1": 4}}
    worker.handle({"op": "cluster_view", "view": view})
    assert worker.least_loaded(5, 2) is not None  # 9 >= 6 + 2 (this worker alone, 5, would not)
    assert worker.least_loaded(5, 5) is None
