"""What a worker process adds to an ordinary server: its siblings, reached through the parent.

The parent starts each worker with ``STREAMD_WORKER=<index>,<count>,<fd>,<run dir>`` in its
environment (``fd``: its end of the control channel). The worker then

- listens on the shared ports with ``SO_REUSEPORT`` and on its own RTP/RTCP pair (base + 2 x index);
- claims the paths it publishes through the parent (:class:`ChannelOwners`), and relays a path
  published in a sibling for its own readers (:mod:`.siblings`, over :mod:`.internal`);
- hands a connection whose request names a sibling's session, and a tunnel POST whose GET is on
  a sibling, over to that sibling (the socket itself, ``SCM_RIGHTS``); a TLS one stays here and its
  decrypted bytes are forwarded to the sibling's client socket instead (:mod:`.pipe`);
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
from streamd.workers import forwarded, http_forward, internal, pipe
from streamd.workers.channel import Channel, ChannelError
from streamd.workers.http_owner import Placement
from streamd.workers.limits import WorkerSlots
from streamd.workers.multicast_link import ChannelGroups
from streamd.workers.ownership import Owner
from streamd.workers.preamble import Preamble
from streamd.workers.siblings import SiblingRelays
from streamd.workers.view import WholeChunks, WholeHls, WholeServer, apply, hls_state, local_state, middleware

log = logging.getLogger("streamd")

ENV = "STREAMD_WORKER"
FIND_TIMEOUT = 3.0
STOP_GRACE = 2.0  # seconds a stopping worker waits for the siblings to end the clients it forwards
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
        self.groups: ChannelGroups | None = None  # multicast groups of the whole server
        self._listener: asyncio.AbstractServer | None = None
        self.owners: ChannelOwners | None = None
        self.http: Any = None  # the HttpService, when HTTP runs
        self.forwarder: http_forward.Forwarder | None = None
        self._http_listener: asyncio.AbstractServer | None = None
        self._webrtc: tuple[dict[str, Any], ...] = ()  # the WHEP and WHIP sessions, by resource id
        self._live_hls: Any = None  # the HTTP side's LiveHls
        self._file_chunks: Any = None  # the HTTP side's FileChunks (WebRTC file conversions)
        self._clients: asyncio.AbstractServer | None = None  # TLS clients forwarded by siblings
        self._broadcasts: set[asyncio.Task[Any]] = set()
        self._forwarding: set[asyncio.Task[None]] = set()
        self._pipes: set[pipe.Pipe] = set()  # TLS clients of ours served by a sibling

    # --- streamd.embed.Extension -----------------------------------------------------------------

    async def built(self, rtsp: Any) -> None:
        self.rtsp = rtsp
        self.channel = Channel(socket.socket(fileno=self.identity.fd), self._handle, "parent")
        asyncio.get_running_loop().create_task(self._watch_parent())
        owners = self.owners = ChannelOwners(self)
        rtsp.paths.owners = owners
        self.siblings = SiblingRelays(
            self.index, self.identity.run_dir, owners, rtsp.paths.live, rtsp.paths.viewers, rtsp.server_header
        )
        rtsp.paths.siblings = self.siblings
        self.cluster = via_parent.join(rtsp, self.channel, self.index, owners, self.siblings)  # one node
        rtsp.session_elsewhere = self._session_elsewhere
        rtsp.dispatcher._authorizer = internal.TrustSiblings(rtsp.dispatcher._authorizer)
        self._listener = await internal.listen(rtsp, internal.socket_path(self.identity.run_dir, self.index))
        self._clients = await forwarded.listen(
            forwarded.socket_path(self.identity.run_dir, self.index),
            self._serve_forwarded,
            self._join_forwarded,
        )
        attached = await self.channel.request("attach")
        for action in attached.get("admin", []):  # drains and moves in force: obey them first
            apply(rtsp.relocator, action)
        if attached.get("slots"):  # the parent counts sessions, publishers, connections: whole server
            WorkerSlots(self.channel).install(rtsp)
        if attached.get("multicast"):  # the parent gives each path one group, one worker sends it
            self.groups = ChannelGroups(
                self.index, self.channel, rtsp.multicast, rtsp.paths.live, self.siblings.is_relay
            )
            self.groups.install()
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
        self._route_http(service)

    def _route_http(self, service: Any) -> None:
        """Requests for what a sibling holds go there (:mod:`.http_owner`, :mod:`.http_forward`);
        WHIP publishers claim their paths across workers; live HLS counters show every worker."""
        from streamd.hls.live_routes import LIVE_KEY
        from streamd.hls.live_service import RequestCollector
        from streamd.http.app import REGISTRY_KEY
        from streamd.webrtc.chunk_cache import ChunkCollector
        from streamd.webrtc.routes import WHEP_KEY, WHIP_KEY
        from streamd.workers.file_placement import FileConverters

        assert self.owners is not None and self.whole is not None
        self.http = service
        app = service.app
        app[WHIP_KEY].owners = self.owners
        if self.siblings is not None:
            app[WHIP_KEY].relayed = self.siblings.is_relay
        self._webrtc = (app[WHEP_KEY].sessions, app[WHIP_KEY].sessions)
        self._live_hls = app[LIVE_KEY]
        converters = FileConverters(self.rtsp.paths, self.channel)  # a file's WebRTC conversion: one worker
        placement = Placement(self.index, self.rtsp.paths, self.owners, self.find, self._has, converters)
        self.forwarder = http_forward.Forwarder(self.identity.run_dir, self.index)
        private = http_forward.socket_path(self.identity.run_dir, self.index)
        app.middlewares.insert(0, http_forward.middleware(private, placement, self.forwarder))
        app[REGISTRY_KEY].register(RequestCollector(WholeHls(self._live_hls, self.whole)))  # type: ignore[arg-type]
        self._file_chunks = app[WHEP_KEY].file_chunks
        app[REGISTRY_KEY].register(ChunkCollector(WholeChunks(self._file_chunks, self.whole)))

    async def stop(self) -> None:
        if self._listener is not None:
            self._listener.close()
        if self._http_listener is not None:
            self._http_listener.close()
        if self.forwarder is not None:
            await self.forwarder.close()
        if self._clients is not None:
            self._clients.close()
        if self._pipes:  # the siblings stop too: let their last words (BYE) through to our clients
            pipes = [asyncio.ensure_future(p.ended.wait()) for p in self._pipes]
            await asyncio.wait(pipes, timeout=STOP_GRACE)
            for waiting in pipes:
                waiting.cancel()
        if self.siblings is not None:
            await self.siblings.close()

    async def ready(self) -> None:
        """Tell the parent this worker serves (it then replays the admin state to it)."""
        if self.http is not None:  # the HTTP side is set up now: siblings may forward requests here
            path = http_forward.socket_path(self.identity.run_dir, self.index)
            self._http_listener = await http_forward.listen(self.http.runner, path)
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
        if isinstance(op, str) and op.startswith("mcast_") and self.groups is not None:
            return self.groups.handle(message)
        if op == "state":
            tunnels = (lambda: len(self.hub.tunnels)) if self.hub is not None else (lambda: 0)
            state = local_state(self.rtsp, self.index, tunnels)
            if self._live_hls is not None:
                state["hls"] = hls_state(self._live_hls)
            if self._file_chunks is not None:
                state["chunks"] = self._file_chunks.counts()
            return state
        if op == "admin":
            return apply(self.rtsp.relocator, message.get("action", {}))
        raise ChannelError(f"unknown op {op!r}")

    def _has(self, kind: str, key: str) -> bool:
        if kind == "session":
            return key in self.rtsp.sessions
        if kind == "tunnel":
            return self.hub is not None and key in self.hub.tunnels
        if kind == "webrtc":  # a WHEP or WHIP session's resource id
            return any(key in sessions for sessions in self._webrtc)
        if kind == "hls":  # a live path's HLS stream (ended ones too, until nobody asks for them)
            return self._live_hls is not None and key in self._live_hls.entries
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
        if connection.secure:  # in a task of its own: give_away cancelled the connection's task, ours
            log.info("%s: session %s is on worker %d: forwarding to it", connection.label, session_id, worker)
            forwarding = asyncio.get_running_loop().create_task(
                self._forward(worker, "rtsp", transport, data)
            )
            self._forwarding.add(forwarding)
            forwarding.add_done_callback(self._forwarding.discard)
            return True
        log.info("%s: session %s is on worker %d: handing it over", connection.label, session_id, worker)
        await self._hand_over(worker, "rtsp", transport, data)
        return True

    async def _post_elsewhere(self, transport: asyncio.Transport, request: Request, rest: bytes) -> bool:
        """A tunnel POST whose GET is on a sibling: the POST's socket goes there."""
        cookie = request.headers.get("x-sessioncookie", "")
        worker = await self.find("tunnel", cookie)
        if worker is None or worker == self.index or transport.is_closing():
            return False
        if transport.get_extra_info("ssl_object") is not None:
            log.info("tunnel %s: its GET is on worker %d; forwarding the POST to it", cookie[:16], worker)
            await self._forward(worker, "tunnel", transport, bytes(request) + rest, f"tunnel {cookie[:16]} ")
            return True
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

    async def _forward(
        self, worker: int, kind: str, transport: asyncio.Transport, data: bytes, what: str = ""
    ) -> None:
        """A TLS connection: its TLS stays here, its decrypted bytes go to ``worker`` and back."""
        peer = transport.get_extra_info("peername") or ("?", 0)
        local = transport.get_extra_info("sockname") or ("?", 0)
        host = f"[{peer[0]}]" if ":" in str(peer[0]) else str(peer[0])
        label = f"client {host}:{peer[1]} ({what}to worker {worker})"
        try:
            preamble = Preamble(kind, (str(peer[0]), int(peer[1])), (str(local[0]), int(local[1])), True)
            preamble.encode()
        except ValueError as exc:  # not an IP connection (it cannot be: TLS listens on IP ports)
            log.warning("%s: cannot be forwarded: %s", label, exc)
            transport.close()
            return
        path = forwarded.socket_path(self.identity.run_dir, worker)
        await pipe.forward(path, preamble, transport, data, label, self._pipes)

    def _serve_forwarded(self, transport: asyncio.Transport, data: bytes) -> None:
        """An RTSP connection a sibling forwards (TLS there): served as if it had arrived here."""
        connection = RtspConnection(self.rtsp)
        transport.set_protocol(connection)
        connection.connection_made(transport)
        if data and connection.transport is not None:
            connection.data_received(data)

    def _join_forwarded(self, transport: asyncio.Transport, request: Request, rest: bytes) -> None:
        """A tunnel POST a sibling forwards (TLS there): joined to its GET as if it had arrived here."""
        if self.hub is None:
            transport.close()
            return
        self.hub.accept(transport, request, rest)

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
