"""The cluster, composed for one server: the store from the configuration, this node, its edge.

The server shell talks to it through three seams: publishers claim and release paths
(:class:`~streamd.cluster.node.ClusterNode`), :class:`~streamd.paths.Paths` asks ``pull`` for a
live path it does not have, and the dispatcher asks ``moved`` before a request's handler.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from typing import Any

from streamd.cluster.edge import Edge
from streamd.cluster.node import ClusterNode
from streamd.cluster.store import ClusterStore
from streamd.config import ServerConfig
from streamd.live.relay import RelayHooks
from streamd.rtsp.errors import RtspError
from streamd.rtsp.message import Request, Response

log = logging.getLogger("streamd")


def redis_store(config: ServerConfig) -> ClusterStore:
    """The cluster's store on ``config.cluster``. The redis package is imported here, not at the
    top: it is a sixth of a server's start-up, and most servers are not in a cluster."""
    from streamd.cluster.redis_store import RedisStore

    assert config.cluster is not None
    # a slow answer is not an outage: wait up to a heartbeat (a loaded machine answers late)
    return RedisStore(config.cluster, timeout=min(5.0, max(0.5, config.cluster_heartbeat)))


class Cluster:
    def __init__(
        self,
        config: ServerConfig,
        *,
        load: Callable[[], int],
        draining: Callable[[], bool],
        drain_targets: Callable[[], tuple[str, ...] | None],
        lost: Callable[[str, str], object],
        store: ClusterStore | None = None,
    ) -> None:
        assert config.cluster is not None
        self.config = config
        self.node = ClusterNode(
            store or redis_store(config),
            heartbeat=config.cluster_heartbeat,
            load=load,
            draining=draining,
            lost=lost,
        )
        self._load = load
        self._drain_targets = drain_targets
        self.edge: Edge | None = None

    def attach(
        self, hooks: Callable[[str], RelayHooks], local: Callable[[str], bool], user_agent: str
    ) -> None:
        """Connect the edge to the server's paths (they exist only after the node)."""
        self.edge = Edge(self.config, self.node, hooks, self._load, local, user_agent)

    async def start(self, rtsp_port: int) -> None:
        await self.node.start(advertised_address(self.config, rtsp_port))

    async def claim(self, path: str, holder: str) -> None:
        """Publishing's ``PathClaims``: this node's (or, in a worker, the machine's) claim."""
        await self.node.claim(path, holder)

    def release(self, path: str, holder: str) -> None:
        self.node.release(path, holder)

    def use_node(self, node: Any) -> None:
        """Claims, owners and balancing from ``node`` instead (a worker: the parent's node,
        :mod:`streamd.cluster.via_parent`)."""
        self.node = node
        if self.edge is not None:
            self.edge.use_node(node)

    def moved(
        self, local: Callable[[Request], Response | None]
    ) -> Callable[[Request], Awaitable[Response | None]]:
        """The dispatcher's redirect check: ``local`` first (configured redirects, moves, drains),
        where a drain to nowhere (503) sends new players to the least-loaded node instead; then
        the cluster's own 302s (to a path's owner, balancing)."""

        async def moved(request: Request) -> Response | None:
            assert self.edge is not None
            try:
                response = local(request)
            except RtspError as exc:
                if exc.status != 503 or self._drain_targets() != ():
                    raise
                response = await self.edge.redirect(request, drained=True)
                if response is None:
                    raise  # no node to send it to (or a publisher): 503 as without a cluster
            return response or await self.edge.redirect(request)

        return moved

    def status(self) -> dict[str, object]:
        """This node's view, for ``GET /api/v1/cluster``."""
        node = self.node
        relays = self.edge.relays if self.edge is not None else {}
        return {
            "node": node.id,
            "available": node.available,
            "heartbeat": node.heartbeat,
            "nodes": [asdict(peer) for peer in node.peers],
            "claims": {path: claim.token for path, claim in sorted(node.claims.items())},
            "edge_relays": sorted(
                {path for path, relay in relays.items() if not relay.finished}
                | set(getattr(node, "edge_relays", ()))  # a worker's: every worker's edge relays
            ),
        }

    async def close(self) -> None:
        if self.edge is not None:
            await self.edge.close()
        await self.node.close()


def advertised_address(config: ServerConfig, rtsp_port: int) -> str:
    """How clients and the other nodes reach this node: ``node_address``, else rtsp://host:port."""
    return (config.node_address or f"rtsp://{_advertised_host(config.host)}:{rtsp_port}").rstrip("/")


def _advertised_host(host: str) -> str:
    if host in ("", "0.0.0.0", "::"):
        name = socket.gethostname() or "127.0.0.1"
        log.info("cluster: advertising %s (set node_address to choose)", name)
        return name
    return f"[{host}]" if ":" in host else host
