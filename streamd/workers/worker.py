"""What a worker process adds to an ordinary server: its siblings, reached through the parent.

The parent starts each worker with ``STREAMD_WORKER=<index>,<count>,<fd>,<run dir>`` in its
environment (``fd``: its end of the control channel). The worker then

- listens on the shared ports with ``SO_REUSEPORT`` and on its own RTP/RTCP pair (base + 2 x index);
- claims the paths it publishes through the parent (:class:`ChannelOwners`), and relays a path
  published in a sibling for its own readers (:mod:`.siblings`, over :mod:`.internal`);
- hands a connection whose request names a sibling's session, and a tunnel POST whose GET is on
  a sibling, over to that sibling (the socket itself, ``SCM_RIGHTS``);
- shows the whole server on its HTTP side and applies admin actions everywhere (:mod:`.view`);
- stops when the parent goes (its channel closes).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import logging
import os
import signal
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from streamd.auth.nonces import NonceBook
from streamd.cluster import via_parent
from streamd.config import ServerConfig
from streamd.connection import RtspConnection
from streamd.rtsp.errors import RtspError
from streamd.rtsp.headers import parse_session
from streamd.rtsp.message import Request
from streamd.rtsp.parser import MessageParser
from streamd.workers import internal
from streamd.workers.channel import Channel, ChannelError
from streamd.workers.limits import WorkerSlots
from streamd.workers.ownership import Owner
from streamd.workers.siblings import SiblingRelays
from streamd.workers.view import WholeServer, apply, local_state, middleware

log = logging.getLogger("streamd")

ENV = "STREAMD_WORKER"
FIND_TIMEOUT = 3.0
MAX_HELD = 1024 * 1024  # bytes a handed-over socket may bring before its new owner takes it


@dataclass(frozen=True)
class Identity:
    index: int
    count: int
    fd: int
    run_dir: Path

    @classmethod
    def from_env(cls) -> Identity | None:
        raw = os.environ.get(ENV)
        if not raw:
            return None
        index, count, fd, run_dir = raw.split(",", 3)
        return cls(int(index), int(count), int(fd), Path(run_dir))

    def config(self, config: ServerConfig) -> ServerConfig:
        """This worker's settings: its own RTP/RTCP port pair, base + 2 x index."""
        port = config.rtp_port + 2 * self.index if config.rtp_port else 0
        return dataclasses.replace(config, rtp_port=port)


def tag_logs(index: int) -> None:
    """Every line this worker logs says which worker it is (they share the parent's output)."""
    for handler in logging.getLogger().handlers:
        formatter = handler.formatter
        if formatter is not None and formatter._fmt is not None and "[worker" not in formatter._fmt:
            formatter._fmt = formatter._fmt.replace("%(message)s", f"[worker {index}] %(message)s")
            formatter._style._fmt = formatter._fmt


class ChannelOwners:
    """:class:`~streamd.workers.ownership.PathOwners` decided by the parent."""

    def __init__(self, runtime: WorkerRuntime) -> None:
        self.runtime = runtime

    async def claim(self, path: str, holder: str) -> Owner | None:
        try:
            found = await self.runtime.channel.request("claim", path=path, holder=holder)
        except ChannelError as exc:
            raise RtspError(503, f"cannot claim {path!r} for publishing: {exc}") from None
        return None if found is None else Owner(int(found["worker"]), str(found["holder"]))

    def release(self, path: str, holder: str) -> None:
        self.runtime.channel.send({"op": "release", "path": path, "holder": holder})

    async def owner(self, path: str) -> Owner | None:
        try:
            found = await self.runtime.channel.request("owner", path=path)
        except ChannelError:
            return None
        return None if found is None else Owner(int(found["worker"]), str(found["holder"]))


class WorkerRuntime:
    """The ``streamd.embed.Extension`` of a worker process."""

    def __init__(self, identity: Identity) -> None:
        self.identity = identity
        self.index = identity.index
        self.channel: Channel = None  # type: ignore[assignment]  # set in built()
        self.rtsp: Any = None
        self.hub: Any = None  # the HTTP side's TunnelHub, when HTTP runs
        self.whole: WholeServer | None = None
        self.siblings: SiblingRelays | None = None
        self.cluster: via_parent.ParentNode | None = None  # in a cluster: the parent's node
        self._listener: asyncio.AbstractServer | None = None
        self._broadcasts: set[asyncio.Task[Any]] = set()

    # --- streamd.embed.Extension -----------------------------------------------------------------

    async def built(self, rtsp: Any) -> None:
        self.rtsp = rtsp
        self.channel = Channel(socket.socket(fileno=self.identity.fd), self._handle, "parent")
        asyncio.get_running_loop().create_task(self._watch_parent())
        owners = ChannelOwners(self)
        rtsp.paths.owners = owners
        self.siblings = SiblingRelays(
            self.index, self.identity.run_dir, owners, rtsp.paths.live, rtsp.paths.viewers, rtsp.server_header
        )
        rtsp.paths.siblings = self.siblings
        self.cluster = via_parent.join(rtsp, self.channel, self.index, owners, self.siblings)  # one node
        rtsp.session_elsewhere = self._session_elsewhere
        rtsp.dispatcher._authorizer = internal.TrustSiblings(rtsp.dispatcher._authorizer)
        self._listener = await internal.listen(rtsp, internal.socket_path(self.identity.run_dir, self.index))
        attached = await self.channel.request("attach")
        for action in attached.get("admin", []):  # drains and moves in force: obey them first
            apply(rtsp.relocator, action)
        if attached.get("slots"):  # the parent counts sessions, publishers, connections: whole server
            WorkerSlots(self.channel).install(rtsp)
        config = rtsp.config
        rtsp.authenticator.nonces = NonceBook(
            config.nonce_lifetime,
            config.max_nonces_per_client,
            secret=bytes.fromhex(attached["nonce_secret"]),
            adopt=True,
        )

    def http_backend(self, rtsp: Any) -> WholeServer:
        self.whole = WholeServer(rtsp, self.index, self.gather, self.broadcast)
        return self.whole

    def http_built(self, service: Any) -> None:
        from streamd.http import metrics
        from streamd.http.app import REGISTRY_KEY

        assert self.whole is not None
        self.hub = service.hub
        self.hub.elsewhere = self._post_elsewhere
        object.__setattr__(self.whole, "tunnels", lambda: len(self.hub.tunnels))
        whole = self.whole
        service.app[REGISTRY_KEY] = metrics.make_registry(
            lambda: whole.snapshot(private=False), whole.tunnel_count, whole.auth_metrics, whole.srtp_stats
        )
        service.app.middlewares.append(middleware(whole, self.settle))

    async def stop(self) -> None:
        if self._listener is not None:
            self._listener.close()
        if self.siblings is not None:
            await self.siblings.close()

    async def ready(self) -> None:
        """Tell the parent this worker serves (it then replays the admin state to it)."""
        await self.channel.request("hello", pid=os.getpid())

    # --- the parent ------------------------------------------------------------------------------

    async def _watch_parent(self) -> None:
        await self.channel.closed.wait()
        self._parent_gone()

    def _parent_gone(self) -> None:
        log.warning("worker %d: the parent process is gone; stopping", self.index)
        os.kill(os.getpid(), signal.SIGTERM)

    async def _handle(self, message: dict[str, Any], fds: list[int]) -> Any:
        op = message.get("op")
        if op == "take":
            return await self._take(message, fds)
        for fd in fds:
            os.close(fd)
        if op == "has":
            return self._has(str(message.get("kind")), str(message.get("key")))
        if isinstance(op, str) and op.startswith("cluster_") and self.cluster is not None:
            return self.cluster.handle(message)
        if op == "state":
            tunnels = (lambda: len(self.hub.tunnels)) if self.hub is not None else (lambda: 0)
            return local_state(self.rtsp, self.index, tunnels)
        if op == "admin":
            return apply(self.rtsp.relocator, message.get("action", {}))
        raise ChannelError(f"unknown op {op!r}")

    def _has(self, kind: str, key: str) -> bool:
        if kind == "session":
            return key in self.rtsp.sessions
        if kind == "tunnel":
            return self.hub is not None and key in self.hub.tunnels
        return False

    async def find(self, kind: str, key: str) -> int | None:
        """The sibling that holds a session (or tunnel) ``key``; None: nobody does."""
        try:
            found = await self.channel.request("find", kind=kind, key=key, timeout=FIND_TIMEOUT)
        except ChannelError as exc:
            log.info("worker %d: cannot ask the siblings for %s %s: %s", self.index, kind, key, exc)
            return None
        return None if found is None else int(found)

    async def gather(self) -> list[dict[str, Any]]:
        try:
            return list(await self.channel.request("gather"))
        except ChannelError as exc:
            log.warning("worker %d: the siblings' state is unavailable: %s", self.index, exc)
            return []

    def broadcast(self, action: dict[str, Any]) -> None:
        task = asyncio.get_running_loop().create_task(self.channel.request("broadcast", action=action))
        self._broadcasts.add(task)
        task.add_done_callback(self._broadcasts.discard)

    async def settle(self) -> int:
        """Wait for the admin actions sent to the siblings to be applied there: how many clients
        they told (REDIRECT)."""
        if not self._broadcasts:
            return 0
        answers = await asyncio.gather(*self._broadcasts, return_exceptions=True)
        return sum(int(n) for a in answers if isinstance(a, list) for n in a if isinstance(n, int))

    # --- handing sockets over -------------------------------------------------------------------

    async def _session_elsewhere(self, connection: RtspConnection, request: Request) -> bool:
        """A request naming a session of a sibling, on a connection with no session here: the
        connection goes to that sibling (which then checks, as always, that it may use it)."""
        header = request.headers.get("Session")
        if header is None or connection.sessions or not request.version.startswith("RTSP/"):
            return False
        session_id = parse_session(header)[0]
        if not session_id or session_id in self.rtsp.sessions:
            return False
        worker = await self.find("session", session_id)
        if worker is None or worker == self.index:
            return False
        given = connection.give_away(request)
        if given is None:
            return False
        transport, data = given
        log.info("%s: session %s is on worker %d: handing it over", connection.label, session_id, worker)
        await self._hand_over(worker, "rtsp", transport, data)
        return True

    async def _post_elsewhere(self, transport: asyncio.Transport, request: Request, rest: bytes) -> bool:
        """A tunnel POST whose GET is on a sibling: the POST's socket goes there."""
        cookie = request.headers.get("x-sessioncookie", "")
        worker = await self.find("tunnel", cookie)
        if worker is None or worker == self.index or transport.is_closing():
            return False
        log.info("tunnel %s: its GET is on worker %d; handing the POST over", cookie[:16], worker)
        transport.set_protocol(_Idle())
        await self._hand_over(worker, "tunnel", transport, bytes(request) + rest)
        return True

    async def _hand_over(self, worker: int, kind: str, transport: asyncio.Transport, data: bytes) -> None:
        sock = transport.get_extra_info("socket")
        try:
            await self.channel.request(
                "handover",
                fds=[sock.fileno()],
                to=worker,
                kind=kind,
                data=base64.b64encode(data).decode(),
            )
        except ChannelError as exc:
            log.warning("worker %d: handing a connection to worker %d failed: %s", self.index, worker, exc)
        finally:
            transport.abort()  # our descriptor only: the socket lives on in the sibling

    async def _take(self, message: dict[str, Any], fds: list[int]) -> bool:
        """A connection a sibling handed over: serve it as if it had arrived here."""
        if len(fds) != 1:
            for fd in fds:
                os.close(fd)
            raise ChannelError("a handover carries exactly one socket")
        sock = socket.socket(fileno=fds[0])
        data = base64.b64decode(message.get("data", ""))
        loop = asyncio.get_running_loop()
        if message.get("kind") == "rtsp":
            _, connection = await loop.connect_accepted_socket(lambda: RtspConnection(self.rtsp), sock)
            if data:
                connection.data_received(data)
            return True
        transport, idle = await loop.connect_accepted_socket(_Idle, sock)
        parser = MessageParser()
        events = parser.feed(data)
        if self.hub is None or not events or not isinstance(events[0], Request):
            transport.close()
            return False
        self.hub.accept(transport, events[0], parser.detach() + bytes(idle.held))
        if not transport.is_closing():
            transport.resume_reading()
        return True


class _Idle(asyncio.Protocol):
    """Holds a socket between owners: reads are paused, and what the loop read anyway (it may
    start reading a socket it was just given) is kept for the next owner, bounded."""

    def __init__(self) -> None:
        self.held = bytearray()
        self.transport: asyncio.BaseTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        with contextlib.suppress(Exception):
            transport.pause_reading()  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        self.held += data
        if len(self.held) > MAX_HELD and self.transport is not None:
            self.transport.close()
