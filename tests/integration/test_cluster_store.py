"""The cluster's store on a real ``redis-server`` (Debian's, on a free port): claims are atomic
(of many nodes claiming a path at the same moment, on connections of their own, exactly one
wins), registrations and claims expire by Redis's clock, fencing tokens keep an old holder from
renewing or releasing a successor's claim, an unreachable Redis is StoreUnavailable (quickly),
and the scripts run again after Redis restarted empty."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from streamd.cluster.redis_store import RedisStore
from streamd.cluster.store import NodeInfo, StoreRecovering, StoreUnavailable
from tests.integration.conftest import free_tcp_port

pytestmark = pytest.mark.integration


class RedisServer:
    """``redis-server`` without persistence on a port of its own; killed and started again by tests."""

    def __init__(self, tmp: Path) -> None:
        if shutil.which("redis-server") is None:
            pytest.skip("needs redis-server (Debian package redis-server)")
        self.port = free_tcp_port()
        self.tmp = tmp
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        log = open(self.tmp / f"redis-{self.port}.log", "ab")  # noqa: SIM115 (the process owns it)
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.tmp)],
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        deadline = time.monotonic() + 20
        while True:
            ping = subprocess.run(
                ["redis-cli", "-p", str(self.port), "ping"], capture_output=True, text=True, check=False
            )
            if ping.stdout.strip() == "PONG":
                return
            assert self.process.poll() is None, "redis-server exited"
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.05)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self.process = None


def redis_server(tmp: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp)
    server.start()
    try:
        yield server
    finally:
        server.kill()


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[RedisServer]:
    yield from redis_server(tmp_path)


async def test_concurrent_claims_on_separate_connections_one_winner(redis: RedisServer) -> None:
    stores = [RedisStore(redis.url) for _ in range(12)]
    try:
        await stores[0].register(NodeInfo("rtsp://n0:1", "rtsp://n0:1"), 5)  # a cluster began
        for rounds in range(5):
            path = f"live/race{rounds}"
            results = await asyncio.gather(
                *(s.claim(path, f"rtsp://n{i}:1", 5) for i, s in enumerate(stores))
            )
            winners = [claim for claim, ours in results if ours]
            assert len(winners) == 1
            assert {claim for claim, _ in results} == {winners[0]}  # the losers were told who holds it
    finally:
        await asyncio.gather(*(s.close() for s in stores))


async def test_expiry_fencing_and_owner_on_redis(redis: RedisServer) -> None:
    a, b = RedisStore(redis.url), RedisStore(redis.url)
    try:
        await a.register(NodeInfo("rtsp://a:1", "rtsp://a:1", load=4, clock=1e9), 0.3)
        old, ours = await a.claim("live/x", "rtsp://a:1", 0.3)
        assert ours and (await b.owner("live/x")) == old
        assert [n.load for n in await b.nodes()] == [4]
        assert await a.renew(old, 0.3)
        await asyncio.sleep(0.5)  # neither renewed: Redis expired both
        assert await b.nodes() == [] and await b.owner("live/x") is None
        new, ours = await b.claim("live/x", "rtsp://b:1", 5)
        assert ours and new.token > old.token
        assert not await a.renew(old, 5)  # the old holder cannot extend the new claim ...
        await a.release(old)  # ... nor delete it
        await b.register(NodeInfo("rtsp://b:1", "rtsp://b:1"), 5)
        assert await a.owner("live/x") == new
        await b.unregister("rtsp://b:1")
        assert await a.owner("live/x") is None  # a claim of an unregistered node is not obeyed
    finally:
        await a.close()
        await b.close()


async def test_unreachable_then_restarted_redis(redis: RedisServer) -> None:
    """Redis away, then back empty: until a node has registered again it takes no new claim (a
    publisher elsewhere could otherwise take a path before its owner's heartbeat claims it)."""
    store = RedisStore(redis.url)
    node = NodeInfo("rtsp://a:1", "rtsp://a:1")
    try:
        assert not await store.register(node, 5)
        claim, _ = await store.claim("live/y", "rtsp://a:1", 5)
        redis.kill()
        started = time.monotonic()
        with pytest.raises(StoreUnavailable):
            await store.renew(claim, 5)
        assert time.monotonic() - started < 5
        with pytest.raises(StoreUnavailable):
            await store.claim("live/z", "rtsp://a:1", 5)
        redis.start()  # empty: the scripts are loaded again, the claim is gone
        assert not await store.renew(claim, 5)
        with pytest.raises(StoreRecovering):
            await store.claim("live/z", "rtsp://b:1", 5)
        again, ours = await store.claim("live/y", "rtsp://a:1", 5, new=False)  # the owner's re-claim
        assert ours and again.token == 1
        assert not await store.register(node, 5)  # forgotten (the node then holds new claims)
        _, ours = await store.claim("live/z", "rtsp://b:1", 5)
        assert ours
    finally:
        await store.close()


async def test_registration_says_whether_it_was_known_and_new_claims_can_be_held(redis: RedisServer) -> None:
    """What a node uses to tell a Redis that lost its state: a registration that was not there,
    and the hold (in Redis's clock) under which only a node's own paths can be claimed again."""
    store = RedisStore(redis.url)
    node = NodeInfo("rtsp://a:1", "rtsp://a:1", 0, False, 0.0)
    try:
        assert not await store.register(node, 5)
        assert await store.register(node, 5)
        await store.hold_new_claims(0.5)
        with pytest.raises(StoreRecovering):
            await store.claim("live/new", "rtsp://b:1", 5)
        mine, ours = await store.claim("live/mine", "rtsp://a:1", 5, new=False)
        assert ours and mine.node == "rtsp://a:1"
        held, ours = await store.claim("live/mine", "rtsp://b:1", 5)  # held paths answer as ever
        assert not ours and held == mine
        deadline = time.monotonic() + 10
        while True:  # the hold expires by Redis's clock
            try:
                _, ours = await store.claim("live/new", "rtsp://b:1", 5)
                break
            except StoreRecovering:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.05)
        assert ours
    finally:
        await store.close()
