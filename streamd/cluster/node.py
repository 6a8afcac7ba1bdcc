"""This node's side of the cluster: its registration heartbeat and the live paths it claims.

Every ``heartbeat`` seconds the node registers itself (address, load, draining) for three
heartbeats and renews its claims for as long; a node that stops (killed, cut off) is forgotten
by the store's clock alone, and so are its claims. While the store is unreachable the node keeps
serving what it has, refuses what it cannot verify (a new publisher: 503) and says so once in the
log; when it is back the node registers again and re-claims its live paths (a path claimed by
another node meanwhile is lost: ``lost`` is told, and ends our publisher).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import replace

from streamd.cluster.store import Claim, ClusterStore, NodeInfo, StoreUnavailable
from streamd.rtsp.errors import RtspError

log = logging.getLogger("streamd")

CLOSE_TIMEOUT = 2.0  # seconds to release claims and unregister when the server stops
DRAIN_CHECK = 0.25  # seconds between looks at whether the node began (or stopped) draining
# after the store forgot the nodes (a Redis restarted empty), paths nobody holds may be claimed
# only after this many heartbeats: every owner beats within one and claims its paths again first
RECOVERY_HEARTBEATS = 2


class ClusterNode:
    def __init__(
        self,
        store: ClusterStore,
        *,
        heartbeat: float,
        load: Callable[[], int],
        draining: Callable[[], bool],
        lost: Callable[[str, str], object],
        clock: Callable[[], float] = time.time,
    ) -> None:
        """``load()`` is this node's session count, ``draining()`` whether it drains; ``lost(path,
        node)`` is told when another node holds a path we published; ``clock`` is only shown."""
        self.store = store
        self.heartbeat = heartbeat
        self.ttl = 3 * heartbeat  # registrations and claims outlive two missed heartbeats
        self.id = ""  # the advertised rtsp:// base URL, set by start()
        self.available = False  # the last call to the store succeeded
        self.peers: list[NodeInfo] = []  # every registered node as of the last heartbeat (us too)
        self.claims: dict[str, Claim] = {}  # live paths we own
        self._holders: dict[str, set[str]] = {}  # path -> local publisher sessions holding it
        self._load, self._draining, self._lost, self._clock = load, draining, lost, clock
        self._task: asyncio.Task[None] | None = None
        self._releases: set[asyncio.Task[None]] = set()
        self._told_draining = False  # what the last registration said
        self._joined = False  # registered once: the store forgetting us since means it lost state

    def info(self) -> NodeInfo:
        self._told_draining = self._draining()
        return NodeInfo(self.id, self.id, self._load(), self._told_draining, self._clock())

    async def start(self, address: str) -> None:
        """Join as ``address`` (rtsp://host:port); an unreachable store is logged, not fatal."""
        self.id = address.rstrip("/")
        await self.beat()
        self._task = asyncio.get_running_loop().create_task(self._run(), name="cluster heartbeat")

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            due = loop.time() + self.heartbeat
            # a drain (or its end) is told at once, so other nodes stop balancing players here
            while (left := due - loop.time()) > 0 and self._draining() == self._told_draining:
                await asyncio.sleep(min(left, DRAIN_CHECK))
            try:
                await self.beat()
            except Exception:  # a bug must not stop the heartbeat (the node would expire)
                log.exception("cluster: heartbeat failed")

    async def beat(self) -> None:
        """One heartbeat: register, renew (or re-claim) every claim, refresh the list of nodes."""
        try:
            known = await self.store.register(self.info(), self.ttl)
            if self._joined and not known:  # restarted empty (or we stalled past our TTL)
                hold = RECOVERY_HEARTBEATS * self.heartbeat
                await self.store.hold_new_claims(hold)
                log.warning(
                    "cluster: the store had lost this node; new publishers wait %g s while owners "
                    "claim their paths again",
                    hold,
                )
            self._joined = True
            for path, claim in list(self.claims.items()):
                if await self.store.renew(claim, self.ttl) or self.claims.get(path) is not claim:
                    continue
                held, ours = await self.store.claim(path, self.id, self.ttl, new=False)  # lost meanwhile
                if self.claims.get(path) is not claim:
                    continue  # released while we asked
                if ours:
                    self.claims[path] = held
                    log.info("cluster: %s claimed again (token %d)", path, held.token)
                else:
                    del self.claims[path]
                    self._holders.pop(path, None)
                    log.warning("cluster: %s is now published on %s; ending our publisher", path, held.node)
                    self._lost(path, held.node)
            self.peers = await self.store.nodes()
        except StoreUnavailable as exc:
            if self.available or not self.peers:
                log.warning(
                    "cluster: store unavailable (%s): serving what we have, refusing new publishers", exc
                )
            self.available = False
            self.peers = [p for p in self.peers if p.id == self.id]  # stale peers are not obeyed
            return
        if not self.available:
            log.info(
                "cluster: registered as %s (%d node(s), %d live path(s) held)",
                self.id,
                len(self.peers),
                len(self.claims),
            )
        self.available = True

    async def claim(self, path: str, holder: str) -> None:
        """Own ``path`` for the publisher session ``holder``: RtspError 403 when another node
        holds it, 503 when the store cannot tell (nobody must publish a path twice)."""
        if path in self.claims:
            self._holders.setdefault(path, set()).add(holder)  # (the server refuses a second RECORD)
            return
        try:
            held, ours = await self.store.claim(path, self.id, self.ttl)
        except StoreUnavailable as exc:
            raise RtspError(
                503,
                f"cannot verify that no other node publishes {path!r}: cluster store unavailable ({exc})",
                body="cluster store unavailable; try again later\n",
            ) from exc
        if not ours:
            raise RtspError(403, f"{path!r} is already being published on {held.node}", body="busy\n")
        self.claims[path] = held
        self._holders.setdefault(path, set()).add(holder)
        log.info("cluster: %s claimed (token %d)", path, held.token)

    def release(self, path: str, holder: str) -> None:
        """``holder`` no longer publishes ``path``; the claim goes with the last holder."""
        holders = self._holders.get(path)
        if holders is None or holder not in holders:
            return
        holders.discard(holder)
        if holders:
            return
        del self._holders[path]
        claim = self.claims.pop(path, None)
        if claim is not None:
            task = asyncio.get_running_loop().create_task(self._release(claim), name=f"release {path}")
            self._releases.add(task)
            task.add_done_callback(self._releases.discard)

    async def _release(self, claim: Claim) -> None:
        try:
            await self.store.release(claim)
            log.info("cluster: %s released", claim.path)
        except StoreUnavailable as exc:  # it expires by itself within the TTL
            log.warning("cluster: %s not released (%s); it expires in %.0f s", claim.path, exc, self.ttl)

    async def owner(self, path: str) -> Claim | None:
        """Who publishes ``path`` (a live node), None if nobody; RtspError 503 if the store is away."""
        try:
            return await self.store.owner(path)
        except StoreUnavailable as exc:
            raise RtspError(
                503, f"cannot tell who publishes {path!r}: cluster store unavailable ({exc})"
            ) from exc

    def least_loaded(self, mine: int, margin: int | None) -> NodeInfo | None:
        """The live peer with the fewest sessions, not draining, if it has ``margin`` fewer than
        ``mine`` (None: whatever its load); counted as one more at once, so a burst is not all
        sent to one node."""
        if not self.available:
            return None
        best, self.peers = least_loaded(self.peers, self.id, mine, margin)
        return best

    async def close(self) -> None:
        """Leave: stop the heartbeat, release our claims, unregister (each best effort)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        claims, self.claims = list(self.claims.values()), {}
        self._holders.clear()
        with contextlib.suppress(StoreUnavailable, TimeoutError):
            async with asyncio.timeout(CLOSE_TIMEOUT):
                await asyncio.gather(*self._releases, return_exceptions=True)
                for claim in claims:
                    await self.store.release(claim)
                if self.id:
                    await self.store.unregister(self.id)
        await self.store.close()


def least_loaded(
    peers: list[NodeInfo], me: str, mine: int, margin: int | None
) -> tuple[NodeInfo | None, list[NodeInfo]]:
    """The peer other than ``me`` with the fewest sessions, not draining, if it has ``margin``
    fewer than ``mine`` (None: whatever its load); and ``peers`` with it counted one more."""
    candidates = [p for p in peers if p.id != me and not p.draining]
    if not candidates:
        return None, peers
    best = min(candidates, key=lambda p: (p.load, p.id))
    if margin is not None and best.load + margin > mine:
        return None, peers
    return best, [replace(p, load=p.load + 1) if p is best else p for p in peers]
