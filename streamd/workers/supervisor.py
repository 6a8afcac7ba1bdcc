"""The parent of ``streamd serve --workers N``: starts N full servers, keeps them running, stops them.

Each worker is ``streamd serve`` with the same arguments, told its place by the environment
(:mod:`.worker`), with one end of a ``SOCK_SEQPACKET`` pair as its control channel. The parent
serves no client; it is the coordinator the workers ask:

- ``claim`` / ``release`` / ``owner``: who publishes which path (:class:`.ownership.OwnerTable`);
  everything a worker held is released when it exits;
- ``find``: which sibling holds a session or a tunnel (asks the others, first yes wins);
- ``gather``: the other workers' state, for pages, the API and metrics;
- ``broadcast``: an admin action for every other worker, kept and replayed to a restarted one;
- ``handover``: a client's socket, passed on to the worker named (``SCM_RIGHTS`` both ways);
- ``file_worker``: the worker converting a file for WebRTC viewers (:mod:`.file_placement`);
- ``mcast_hold`` / ``mcast_state``: multicast groups for the whole server
  (:class:`.multicast_table.ParentGroups`); a worker's holds are released when it exits;
- ``slots_reserve`` / ``slots_release``: the whole server's session, publisher and connection
  limits (:class:`.limits.SlotTable`); everything a worker held is released when it exits;
- ``cluster_*``: in a cluster, the machine's one node (:mod:`streamd.cluster.machine`).

A worker that exits is logged and started again (after 0.5 s, doubling up to 10 s while it keeps
dying young); the others carry on. SIGTERM or SIGINT stops every worker with SIGTERM (each ends
its sessions with RTCP BYE, as a single server does) and waits for them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from streamd.config import ServerConfig
from streamd.workers.channel import Channel, ChannelError
from streamd.workers.file_placement import chosen
from streamd.workers.limits import ParentSlots
from streamd.workers.multicast_table import ParentGroups
from streamd.workers.ownership import EDGE_HOLDER, OwnerTable
from streamd.workers.worker import ENV

if TYPE_CHECKING:
    from streamd.cluster.machine import MachineNode

log = logging.getLogger("streamd")

STOP_TIMEOUT = 30.0  # seconds the workers get to end their sessions before they are killed
ASK_TIMEOUT = 3.0
FIRST_DELAY, MAX_DELAY = 0.5, 10.0
STABLE_AFTER = 30.0  # a worker that ran this long before it died is restarted without delay growth


@dataclass
class Worker:
    index: int
    process: asyncio.subprocess.Process
    channel: Channel
    attached: bool = False  # answers on its channel (its server is composed, maybe not listening yet)
    ready: bool = False  # listening


@dataclass
class AdminState:
    """The admin actions in force, for a worker started later."""

    drain: dict[str, Any] | None = None
    moves: dict[str, dict[str, Any]] = field(default_factory=dict)

    def note(self, action: dict[str, Any]) -> None:
        kind = action.get("kind")
        if kind == "drain":
            self.drain = action
        elif kind == "stop_draining":
            self.drain = None
        elif kind == "move":
            path = str(action.get("path"))
            if action.get("to"):
                self.moves[path] = action
            else:
                self.moves.pop(path, None)

    def replay(self) -> list[dict[str, Any]]:
        return [*self.moves.values(), *([self.drain] if self.drain else [])]


class Supervisor:
    def __init__(
        self, count: int, argv: list[str], python: str = sys.executable, config: ServerConfig | None = None
    ) -> None:
        """``config``: the workers' settings, for what the parent keeps for the whole machine
        (its limits, :mod:`.limits`; its cluster node, :mod:`streamd.cluster.machine`)."""
        self.count = count
        self.argv = argv
        self.python = python
        self.workers: dict[int, Worker] = {}
        self.owners = OwnerTable()
        self.admin = AdminState()
        self.restarts = 0
        # one Digest nonce secret for every worker: a client answers a challenge on a new
        # connection (a tunnel's next GET), which may land on another worker
        self.nonce_secret = os.urandom(32).hex()
        self.failed = False
        self._stopping = asyncio.Event()
        self._all_ready = False
        self._cluster_start: asyncio.Task[None] | None = None
        self.run_dir = Path(tempfile.mkdtemp(prefix="streamd-workers-"))  # 0700: only we reach it
        self.cluster: MachineNode | None = None  # the machine is one node of its cluster
        # sessions, publishers and connections counted for the whole server, not per worker
        self.slots = ParentSlots(config) if config is not None else None
        # one multicast group per path for the whole server, one worker sending it
        spec = config.multicast_spec() if config is not None else None
        self.groups = ParentGroups(spec, self.owners, self._channels) if spec is not None else None
        if config is not None and config.cluster is not None:
            from streamd.cluster.machine import MachineNode  # (Redis, only in a cluster)

            self.cluster = MachineNode(
                config, self._channels, lambda: self.admin.drain is not None, self._edge_relays
            )

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self._stopping.set)
        log.info("starting %d worker processes", self.count)
        keepers = [loop.create_task(self._keep(i), name=f"worker {i}") for i in range(self.count)]
        try:
            await self._stopping.wait()
            log.info("stopping %d worker processes", len(self.workers))
            await self._stop_all()
        finally:
            if self.cluster is not None:  # release the machine's claims, unregister it
                with contextlib.suppress(Exception):
                    await self.cluster.close()
            for keeper in keepers:
                keeper.cancel()
            await asyncio.gather(*keepers, return_exceptions=True)
            shutil.rmtree(self.run_dir, ignore_errors=True)
        log.info("stopped")
        return 1 if self.failed else 0

    async def _keep(self, index: int) -> None:
        loop = asyncio.get_running_loop()
        delay = FIRST_DELAY
        while not self._stopping.is_set():
            started = loop.time()
            code, was_ready = await self._run_worker(index)
            if self._stopping.is_set():
                return
            if not was_ready and not self._all_ready:  # cannot start at all (a port in use, ...)
                log.error("worker %d could not start (code %d); stopping", index, code)
                self.failed = True
                self._stopping.set()
                return
            if loop.time() - started > STABLE_AFTER:
                delay = FIRST_DELAY
            how = f"killed by signal {-code}" if code < 0 else f"exited with code {code}"
            log.error("worker %d %s; starting it again in %.1f s", index, how, delay)
            self.restarts += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), delay)
            delay = min(delay * 2, MAX_DELAY)

    async def _run_worker(self, index: int) -> tuple[int, bool]:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        env = {**os.environ, ENV: f"{index},{self.count},{theirs.fileno()},{self.run_dir}"}
        try:
            process = await asyncio.create_subprocess_exec(
                self.python, "-m", "streamd.cli", *self.argv, env=env, pass_fds=[theirs.fileno()]
            )
        finally:
            theirs.close()
        channel = Channel(ours, lambda message, fds: self._handle(index, message, fds), f"worker {index}")
        worker = self.workers[index] = Worker(index, process, channel)
        try:
            return await process.wait(), worker.ready
        finally:
            channel.close()
            if self.workers.get(index) is not None and self.workers[index].process is process:
                del self.workers[index]
            released = self.owners.release_worker(index)
            if self.groups is not None:
                self.groups.worker_gone(index)
            if self.cluster is not None:
                self.cluster.worker_gone(index)
            if self.slots is not None and (freed := self.slots.table.release_worker(index)):
                what = "sessions, publishers, connections"
                log.info("worker %d held %d slots (%s): released", index, freed, what)
            if released:
                log.info("worker %d held %s: free for a new publisher", index, ", ".join(sorted(released)))

    async def _stop_all(self) -> None:
        workers = list(self.workers.values())
        for worker in workers:
            with contextlib.suppress(ProcessLookupError):
                worker.process.send_signal(signal.SIGTERM)
        waits = [asyncio.create_task(w.process.wait()) for w in workers]
        if not waits:
            return
        _, late = await asyncio.wait(waits, timeout=STOP_TIMEOUT)
        for worker in workers:
            if worker.process.returncode is None:
                log.error("worker %d did not stop in %.0f s; killing it", worker.index, STOP_TIMEOUT)
                with contextlib.suppress(ProcessLookupError):
                    worker.process.kill()
        if late:
            await asyncio.wait(late)

    # --- what the workers ask --------------------------------------------------------------------

    async def _handle(self, index: int, message: dict[str, Any], fds: list[int]) -> Any:
        op = message.get("op")
        if op == "handover":
            return await self._handover(index, message, fds)
        for fd in fds:
            os.close(fd)
        if op == "attach":
            return self._attach(index)
        if op == "hello":
            return self._hello(index, int(message.get("pid", 0)))
        if op == "claim":
            held = self.owners.claim(str(message["path"]), index, str(message["holder"]))
            self._edge_changed(message)
            return None if held is None else {"worker": held.worker, "holder": held.holder}
        if op == "release":
            self.owners.release(str(message["path"]), index, str(message["holder"]))
            self._edge_changed(message)
            return None
        if op == "owner":
            held = self.owners.owner(str(message["path"]))
            return None if held is None else {"worker": held.worker, "holder": held.holder}
        if op == "file_worker":  # the running worker that converts this file for WebRTC
            return chosen(
                str(message.get("path")), self.count, [i for i, w in self.workers.items() if w.ready]
            )
        if op in ("slots_reserve", "slots_release") and self.slots is not None:
            return self.slots.handle(index, message)
        if isinstance(op, str) and op.startswith("mcast_") and self.groups is not None:
            return await self.groups.handle(index, message)
        if isinstance(op, str) and op.startswith("cluster_") and self.cluster is not None:
            return await self.cluster.handle(index, message)
        if op == "find":
            return await self._find(index, str(message.get("kind")), str(message.get("key")))
        if op == "gather":
            return await self._gather(index)
        if op == "broadcast":
            action = message.get("action") or {}
            self.admin.note(action)
            return await self._ask_others(index, "admin", action=action)
        raise ChannelError(f"unknown op {op!r}")

    def _attach(self, index: int) -> dict[str, Any]:
        """A worker composed its server: siblings may ask it now; the admin actions in force."""
        worker = self.workers.get(index)
        if worker is None:
            return {}
        worker.attached = True
        return {
            "admin": self.admin.replay(),
            "nonce_secret": self.nonce_secret,
            "slots": self.slots is not None,
            "multicast": self.groups is not None,
        }

    def _hello(self, index: int, pid: int) -> None:
        worker = self.workers.get(index)
        if worker is None:
            return
        worker.ready = True
        log.info("worker %d (pid %d) ready", index, pid)
        everyone = len(self.workers) == self.count and all(w.ready for w in self.workers.values())
        if not self._all_ready and everyone:
            self._all_ready = True
            log.info("all %d workers ready", self.count)
            if self.cluster is not None:
                self._cluster_start = asyncio.get_running_loop().create_task(self.cluster.start())

    def _edge_relays(self) -> list[str]:
        return [path for path, owner in self.owners.items() if owner.holder == EDGE_HOLDER]

    def _edge_changed(self, message: dict[str, Any]) -> None:
        """A worker took (or let go of) a path pulled from another node: the workers show it."""
        if self.cluster is not None and message.get("holder") == EDGE_HOLDER:
            self.cluster.push_view()

    def _channels(self) -> dict[int, Channel]:
        return {i: w.channel for i, w in sorted(self.workers.items()) if w.attached}

    def _others(self, index: int) -> list[Worker]:
        return [w for i, w in sorted(self.workers.items()) if i != index and w.attached]

    async def _ask_others(self, index: int, op: str, **args: Any) -> list[Any]:
        others = self._others(index)
        answers = await asyncio.gather(
            *(w.channel.request(op, timeout=ASK_TIMEOUT, **args) for w in others), return_exceptions=True
        )
        return [a for a in answers if not isinstance(a, BaseException)]

    async def _find(self, index: int, kind: str, key: str) -> int | None:
        others = self._others(index)
        answers = await asyncio.gather(
            *(w.channel.request("has", timeout=ASK_TIMEOUT, kind=kind, key=key) for w in others),
            return_exceptions=True,
        )
        return next((w.index for w, yes in zip(others, answers, strict=True) if yes is True), None)

    async def _gather(self, index: int) -> list[Any]:
        return await self._ask_others(index, "state")

    async def _handover(self, index: int, message: dict[str, Any], fds: list[int]) -> bool:
        try:
            target = self.workers.get(int(message.get("to", -1)))
            if target is None or not target.attached:
                raise ChannelError(f"worker {message.get('to')} is not running")
            args = {k: v for k, v in message.items() if k in ("kind", "data")}
            return bool(await target.channel.request("take", fds=fds, timeout=ASK_TIMEOUT, **args))
        finally:
            for fd in fds:
                os.close(fd)
