"""A machine's cluster node when it runs worker processes: one node, run by the parent.

With ``--workers N`` the machine is still one node of the cluster: one registration (with the
load of every worker summed), one claim per live path it publishes. The parent runs the
:class:`~streamd.cluster.node.ClusterNode` (heartbeat, registration, claims) and the workers ask
it over their control channel (:class:`~streamd.cluster.via_parent.ParentNode` is their side).
Which worker of the machine holds a path is the parent's ``OwnerTable`` business, not the
cluster's. Messages, all ``op`` names starting with ``cluster_``:

- worker to parent: ``cluster_claim`` (path, holder) answers None or the refusal (status, reason,
  body); ``cluster_release`` (no answer); ``cluster_owner`` (path) answers the claim or None;
- parent to worker: ``cluster_load`` answers its session count; ``cluster_view`` (no answer)
  carries what the worker shows and balances with (id, peers, claims, every worker's load, the
  machine's edge relays);
  ``cluster_lost`` tells the worker holding a path that another node has it now.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from streamd.cluster.node import ClusterNode
from streamd.cluster.service import advertised_address, redis_store
from streamd.cluster.store import ClusterStore
from streamd.config import ServerConfig
from streamd.rtsp.errors import RtspError
from streamd.workers.channel import Channel, ChannelError

log = logging.getLogger("streamd")

LOAD_TIMEOUT = 1.0  # a worker that does not say its load in time keeps its previous figure


class MachineNode:
    """The parent's cluster node: claims on behalf of every worker, the machine's load."""

    def __init__(
        self,
        config: ServerConfig,
        channels: Callable[[], dict[int, Channel]],
        draining: Callable[[], bool],
        edge_relays: Callable[[], list[str]],
        store: ClusterStore | None = None,
    ) -> None:
        """``channels()``: the running workers' channels by index; ``draining()``: whether a
        drain is in force (the parent keeps the admin actions); ``edge_relays()``: the paths a
        worker pulls from another node."""
        assert config.cluster is not None
        self.node = ClusterNode(
            store or redis_store(config),
            heartbeat=config.cluster_heartbeat,
            load=lambda: sum(self.loads.values()),
            draining=draining,
            lost=self._lost,
        )
        # known before the first heartbeat: a claim made meanwhile carries the right id
        self.node.id = advertised_address(config, config.rtsp_port)
        self._channels = channels
        self._edge_relays = edge_relays
        self.loads: dict[int, int] = {}  # sessions per worker, as of the last look
        self.holders: dict[tuple[str, str], int] = {}  # (path, publisher session) -> its worker
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Register (the workers listen now) and keep the workers' view fresh."""
        await self.refresh_loads()
        await self.node.start(self.node.id)
        self._task = asyncio.get_running_loop().create_task(self._run(), name="cluster loads")

    async def _run(self) -> None:
        while True:
            self.push_view()
            await asyncio.sleep(self.node.heartbeat)
            try:
                await self.refresh_loads()
            except Exception:  # a bug must not stop the loads (the registration would lie)
                log.exception("cluster: asking the workers for their load failed")

    async def refresh_loads(self) -> None:
        channels = self._channels()
        answers = await asyncio.gather(
            *(c.request("cluster_load", timeout=LOAD_TIMEOUT) for c in channels.values()),
            return_exceptions=True,
        )
        for index, answer in zip(channels, answers, strict=True):
            if isinstance(answer, int):
                self.loads[index] = answer
        for index in [i for i in self.loads if i not in channels]:
            del self.loads[index]

    def view(self) -> dict[str, Any]:
        node = self.node
        return {
            "id": node.id,
            "available": node.available,
            "peers": [asdict(peer) for peer in node.peers],
            "claims": {path: [claim.node, claim.token] for path, claim in node.claims.items()},
            "loads": {str(i): n for i, n in self.loads.items()},
            "edge_relays": sorted(self._edge_relays()),
        }

    def push_view(self) -> None:
        view = self.view()
        for channel in self._channels().values():
            channel.send({"op": "cluster_view", "view": view})

    async def handle(self, index: int, message: dict[str, Any]) -> Any:
        op = message.get("op")
        path, holder = str(message.get("path", "")), str(message.get("holder", ""))
        if op == "cluster_claim":
            try:
                await self.node.claim(path, holder)
            except RtspError as exc:
                return {"status": exc.status, "reason": exc.reason, "body": exc.body}
            self.holders[(path, holder)] = index
            self.push_view()
            return None
        if op == "cluster_release":
            if self.holders.pop((path, holder), None) is not None:
                self.node.release(path, holder)
                self.push_view()
            return None
        if op == "cluster_owner":
            try:
                claim = await self.node.owner(path)
            except RtspError as exc:
                return {"status": exc.status, "reason": exc.reason}
            return None if claim is None else {"node": claim.node, "token": claim.token}
        raise ChannelError(f"unknown op {op!r}")

    def worker_gone(self, index: int) -> None:
        """A worker exited: what it published is no longer published by this machine."""
        self.loads.pop(index, None)
        for (path, holder), worker in list(self.holders.items()):
            if worker == index:
                del self.holders[(path, holder)]
                self.node.release(path, holder)

    def _lost(self, path: str, node: str) -> None:
        """Another node has ``path`` now: the worker publishing it here ends its publisher."""
        channels = self._channels()
        for (held, holder), index in list(self.holders.items()):
            if held == path:
                del self.holders[(held, holder)]
                if index in channels:
                    channels[index].send({"op": "cluster_lost", "path": path, "node": node})

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.node.close()
