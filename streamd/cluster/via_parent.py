"""A worker's side of its machine's cluster node, which the parent runs (:mod:`.machine`).

:class:`ParentNode` stands in for :class:`~streamd.cluster.node.ClusterNode` in a worker's
:class:`~streamd.cluster.service.Cluster`: claims and owner lookups are asked of the parent (one
round trip per publisher or edge pull, never per packet), and what the node knows (its id, the
peers and their loads, its claims) arrives from the parent after every heartbeat and claim, so
``/api/v1/cluster`` and balancing answer without asking.

:func:`one_edge_per_machine` makes a path published on another node pulled once per machine,
not once per worker: the worker that pulls it takes the path in the parent's ``OwnerTable``, so
its siblings relay it from that worker as they would a local publisher's.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from streamd.cluster.node import least_loaded
from streamd.cluster.service import advertised_address
from streamd.cluster.store import Claim, NodeInfo
from streamd.live.hub import LivePath
from streamd.rtsp.errors import RtspError
from streamd.workers.channel import ChannelError
from streamd.workers.internal import SIBLING
from streamd.workers.ownership import EDGE_HOLDER, PathOwners

log = logging.getLogger("streamd")

Request = Callable[..., Awaitable[Any]]


class ParentNode:
    """The machine's cluster node as one worker uses it."""

    def __init__(
        self,
        request: Request,
        send: Callable[[dict[str, Any]], None],
        *,
        index: int,
        heartbeat: float,
        load: Callable[[], int],
        lost: Callable[[str, str], object],
    ) -> None:
        """``request(op, **args)`` / ``send(message)``: the channel to the parent; ``load()`` this
        worker's sessions; ``lost(path, node)`` ends our publisher of a path another node has."""
        self._request, self._send = request, send
        self.index = index
        self.heartbeat = heartbeat
        self._load, self._lost = load, lost
        self.id = ""
        self.available = False
        self.peers: list[NodeInfo] = []
        self.claims: dict[str, Claim] = {}
        self.loads: dict[int, int] = {}  # every worker's sessions, as of the parent's last look
        self.edge_relays: list[str] = []  # paths the machine's workers pull from other nodes

    # --- what the parent tells -------------------------------------------------------------------

    def handle(self, message: dict[str, Any]) -> Any:
        op = message.get("op")
        if op == "cluster_load":
            return self._load()
        if op == "cluster_view":
            self.update(message.get("view") or {})
            return None
        if op == "cluster_lost":
            self._lost(str(message.get("path")), str(message.get("node")))
            return None
        raise ChannelError(f"unknown op {op!r}")

    def update(self, view: dict[str, Any]) -> None:
        self.id = str(view.get("id", self.id))
        self.available = bool(view.get("available"))
        self.peers = [NodeInfo(**peer) for peer in view.get("peers", [])]
        self.claims = {
            path: Claim(path, str(node), int(token)) for path, (node, token) in view.get("claims", {}).items()
        }
        self.loads = {int(i): int(n) for i, n in view.get("loads", {}).items()}
        self.edge_relays = [str(path) for path in view.get("edge_relays", [])]

    # --- what ClusterNode does for the server ----------------------------------------------------

    async def start(self, address: str) -> None:
        return None  # the parent registers the machine once its workers listen

    async def claim(self, path: str, holder: str) -> None:
        try:
            refused = await self._request("cluster_claim", path=path, holder=holder)
        except ChannelError as exc:
            raise RtspError(503, f"cannot claim {path!r} in the cluster: {exc}") from None
        if refused is not None:
            raise RtspError(int(refused["status"]), str(refused["reason"]), body=refused.get("body"))

    def release(self, path: str, holder: str) -> None:
        self._send({"op": "cluster_release", "path": path, "holder": holder})

    async def owner(self, path: str) -> Claim | None:
        try:
            found = await self._request("cluster_owner", path=path)
        except ChannelError as exc:
            raise RtspError(503, f"cannot tell who publishes {path!r}: {exc}") from None
        if found is None:
            return None
        if "status" in found:
            raise RtspError(int(found["status"]), str(found["reason"]))
        return Claim(path, str(found["node"]), int(found["token"]))

    def least_loaded(self, mine: int, margin: int | None) -> NodeInfo | None:
        """As :meth:`ClusterNode.least_loaded`, ``mine`` being this worker's load: the machine's
        is that plus the other workers' as of the parent's last look."""
        if not self.available:
            return None
        machine = mine + sum(n for i, n in self.loads.items() if i != self.index)
        best, self.peers = least_loaded(self.peers, self.id, machine, margin)
        return best

    async def close(self) -> None:
        return None  # the parent releases the machine's claims and unregisters it


def one_edge_per_machine(
    pull: Callable[[str], Awaitable[LivePath | None]],
    node: ParentNode,
    owners: PathOwners,
    siblings: Callable[[str], Awaitable[LivePath | None]],
) -> Callable[[str], Awaitable[LivePath | None]]:
    """``Paths.remote`` for a worker: ``pull`` (the edge) only after taking the path among the
    workers, and only for a path another node publishes (a path nobody publishes is not taken:
    a publisher arriving here meanwhile must get it); a sibling that took it first is read
    through ``siblings`` instead."""

    async def remote(path: str) -> LivePath | None:
        owner = await node.owner(path)
        if owner is None or owner.node == node.id:
            return None
        if await owners.claim(path, EDGE_HOLDER) is not None:
            return await siblings(path)  # a sibling pulls it (it took it while we looked)
        live = None
        try:
            live = await pull(path)
        finally:
            if live is None:
                owners.release(path, EDGE_HOLDER)
        return live

    return remote


def join(rtsp: Any, channel: Any, index: int, owners: PathOwners, siblings: Any) -> ParentNode | None:
    """Make a worker's cluster the machine's (run by the parent); None outside a cluster."""
    cluster = rtsp.cluster
    if cluster is None or cluster.edge is None:
        return None
    node = ParentNode(
        channel.request,
        channel.send,
        index=index,
        heartbeat=rtsp.config.cluster_heartbeat,
        load=lambda: sum(1 for s in rtsp.sessions.values() if s.client_host != SIBLING),
        lost=rtsp._path_lost,
    )
    node.id = advertised_address(rtsp.config, rtsp.config.rtsp_port)  # as the parent registers it
    cluster.use_node(node)
    cluster.edge.finished = lambda path: owners.release(path, EDGE_HOLDER)
    rtsp.paths.remote = one_edge_per_machine(cluster.edge.pull, node, owners, siblings.pull)
    return node
