"""The cluster, composed for one server: the store from the configuration, this node, its edge.

The server shell talks to it through three seams: publishers claim and release paths
(:class:`~streamd.cluster.node.ClusterNode`), :class:`~streamd.paths.Paths` asks ``pull`` for a
live path it does not have, and the dispatcher asks ``moved`` before a request's handler.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Awaitable, Callable

from streamd.cluster.edge import Edge
from streamd.cluster.node import ClusterNode
from streamd.cluster.redis_store import RedisStore
from streamd.cluster.store import ClusterStore
from streamd.config import ServerConfig
from streamd.live.relay import RelayHooks
from streamd.rtsp.message import Request, Response

log = logging.getLogger("streamd")


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
            store or RedisStore(config.cluster),
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
        address = self.config.node_address or f"rtsp://{_advertised_host(self.config.host)}:{rtsp_port}"
        await self.node.start(address)

    def moved(
        self, local: Callable[[Request], Response | None]
    ) -> Callable[[Request], Awaitable[Response | None]]:
        """The dispatcher's redirect check: a drain to nowhere sends new sessions to the least-loaded
        node; then ``local`` (configured redirects, moves, drains); then the cluster's own 302s."""

        async def moved(request: Request) -> Response | None:
            assert self.edge is not None
            drain_to = self._drain_targets()
            if drain_to is not None and not drain_to:
                response = await self.edge.redirect(request, drained=True)
                if response is not None:
                    return response
            return local(request) or await self.edge.redirect(request)

        return moved

    async def close(self) -> None:
        if self.edge is not None:
            await self.edge.close()
        await self.node.close()


def _advertised_host(host: str) -> str:
    if host in ("", "0.0.0.0", "::"):
        name = socket.gethostname() or "127.0.0.1"
        log.info("cluster: advertising %s (set node_address to choose)", name)
        return name
    return f"[{host}]" if ":" in host else host
