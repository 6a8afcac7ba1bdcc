"""A path this node does not own: pulled from its owner (an edge relay), or a 302 to the owner.

Per path (``cluster_mode``): ``"relay"`` (default) pulls the owner's stream once, over one RTSP
session shared by every local reader, and lets go of it ``source_close_after`` seconds after the
last reader left, like a configured relay; ``"redirect"`` answers DESCRIBE/SETUP with ``302`` to
the owner. An edge relay never retries its origin: when the origin goes away its readers get
RTCP BYE (end of stream) and the next reader asks the store again, since the path may by then be
published on another node.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from streamd.cluster.node import ClusterNode
from streamd.config import ServerConfig
from streamd.live.hub import LivePath
from streamd.live.redirect import moved_response
from streamd.live.relay import Relay, RelayHooks
from streamd.rtsp.message import Request, Response
from streamd.rtsp.url import request_path, split_control

log = logging.getLogger("streamd")

EDGE_START_TIMEOUT = 10.0  # a reader's DESCRIBE waits this long for the origin to play


class EdgeRelay(Relay):
    """A relay that pulls once: no reconnecting to an origin that went away."""

    finished = False
    on_finished: Callable[[str], object] | None = None  # told the path when the relay is done

    def _wanted(self, now: float) -> bool:
        return self.attempts == 0 and super()._wanted(now)

    async def _run(self) -> None:
        try:
            await super()._run()
        finally:
            self.finished = True
            if self.on_finished is not None:
                self.on_finished(self.name)


class Edge:
    def __init__(
        self,
        config: ServerConfig,
        node: ClusterNode,
        hooks: Callable[[str], RelayHooks],
        load: Callable[[], int],
        local: Callable[[str], bool],
        user_agent: str,
    ) -> None:
        """``hooks(path)`` connects an edge relay to the paths; ``load()`` is our session count;
        ``local(path)`` whether the path is published (or relayed) here now."""
        self._config = config
        self._node = node
        self._hooks = hooks
        self._load = load
        self._local = local
        self._user_agent = user_agent
        self.relays: dict[str, EdgeRelay] = {}
        self.finished: Callable[[str], object] | None = None  # an edge relay let go of its path

    def use_node(self, node: Any) -> None:
        self._node = node

    async def pull(self, path: str) -> LivePath | None:
        """``path`` pulled from the node that owns it (None: nobody publishes it, or redirect mode)."""
        settings = self._config.path_settings(path)
        if settings.cluster_mode != "relay":
            return None
        relay = self.relays.get(path)
        if relay is None or relay.finished:
            for name in [name for name, done in self.relays.items() if done.finished]:
                del self.relays[name]  # origins gone (or pulled and let go): forget them
            owner = await self._node.owner(path)
            if owner is None or owner.node == self._node.id:
                return None
            relay = EdgeRelay(
                path,
                f"{owner.node}/{quote(path)}",
                self._hooks(path),
                close_after=settings.source_close_after,
                user_agent=self._user_agent,
            )
            relay.label = f"edge relay {path} <- {owner.node} (token {owner.token})"
            relay.on_finished = self.finished
            self.relays[path] = relay
        return await relay.wait_online(EDGE_START_TIMEOUT)

    async def redirect(self, request: Request, *, drained: bool = False) -> Response | None:
        """302 for a new player session: to the owner (``cluster_mode = "redirect"``), or to the
        least-loaded node (``cluster_balance``, or always while ``drained`` to nowhere)."""
        if request.method not in ("DESCRIBE", "SETUP") or request.uri == "*":
            return None
        if request.method == "SETUP" and "Session" in request.headers:
            return None
        path, control = split_control(request_path(request.uri))
        if not path:
            return None
        location = None
        settings = self._config.path_settings(path)
        if (
            settings.cluster_mode == "redirect"
            and not self._local(path)
            and self._config.accepts_publisher(path)
        ):
            owner = await self._node.owner(path)
            if owner is not None and owner.node != self._node.id:
                location = f"{owner.node}/{quote(path)}"
        if location is None and (drained or self._config.cluster_balance):
            margin = None if drained else self._config.cluster_balance_margin
            target = self._node.least_loaded(self._load(), margin)
            if target is not None:
                location = f"{target.rtsp}/{quote(path)}"
        if location is None:
            return None
        response = moved_response(location, control)
        log.info("%s %s -> 302 %s (cluster)", request.method, path, response.headers["Location"])
        return response

    async def close(self) -> None:
        await asyncio.gather(*(relay.stop() for relay in self.relays.values()))
