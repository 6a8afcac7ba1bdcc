"""The RTSP server, composed: listeners, the reaper, and the parts that own each lifetime.

- connections: :mod:`streamd.connection` (bytes, parsing, write flow control), kept here in a set;
- sessions: :mod:`streamd.sessions` (registry, ownership, caps, ``expired(now)``) and
  :mod:`streamd.lifecycle` (winding sessions down, reaping);
- paths: :mod:`streamd.paths` (files, live paths, relays);
- packets from clients: :mod:`streamd.routing` (the table) and :mod:`streamd.inbound` (delivery);
- requests: :mod:`streamd.handlers` (player side), :mod:`streamd.publishing` (publisher side),
  :mod:`streamd.relocator` (redirects, drain), all deciding by :mod:`streamd.rtsp.server_session`.

Nothing imports this module but the entry points (``streamd.embed``); the parts get narrow
collaborators, never the server.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

from media.unit_cache import UnitCache
from streamd.auth.authenticator import Authenticator
from streamd.auth.external import with_external
from streamd.auth.limits import LoginLimits
from streamd.auth.model import Authorizer
from streamd.auth.nonces import NonceBook
from streamd.auth.users import Policy
from streamd.catalog import Catalog, Resolved
from streamd.cluster.service import Cluster
from streamd.config import ServerConfig
from streamd.connection import RtspConnection
from streamd.handlers.common import loop_clock
from streamd.handlers.dispatch import Dispatcher
from streamd.handlers.player import PlayerContext, PlayerHandlers
from streamd.handlers.table import method_table
from streamd.inbound import Inbound
from streamd.lifecycle import Lifecycle
from streamd.limits import Admission
from streamd.live.hub import LivePath
from streamd.live.multicast import MulticastService
from streamd.live.recorder import Recordings
from streamd.live.relay import Relay
from streamd.paths import Paths
from streamd.publishing import Publishing
from streamd.relocator import Relocator
from streamd.routing import PacketRoutes
from streamd.rtsp.message import InterleavedFrame, Request, Response
from streamd.security.gate import EncryptionGate
from streamd.server_session import PublisherSession
from streamd.session_report import snapshot
from streamd.sessions import Caps, SessionRegistry
from streamd.tls.acceptor import Handshakes, TlsAcceptor
from streamd.tls.certificates import Certificates
from streamd.transport.multicast import multicast_interface
from streamd.transport.udp import UdpPair
from streamd.version import __version__

log = logging.getLogger("streamd")


class RtspServer:
    def __init__(
        self,
        config: ServerConfig,
        catalog: Catalog,
        *,
        clock: Callable[[], float] = loop_clock,
        authorizer: Authorizer | None = None,
    ) -> None:
        """``clock``: monotonic seconds for session activity and timeouts (tests pass a fake one);
        ``authorizer``: who may do what (default: the config's ``[[users]]``, :attr:`authenticator`)."""
        self.config = config
        self.clock = clock
        self.catalog = catalog
        self.server_header = f"streamd/{__version__}"
        self.cname_host = socket.gethostname() or "streamd"
        self.connections: set[RtspConnection] = set()
        self.connection_limits = Admission(
            config.max_connections, config.max_connections_per_client, "connections"
        )
        self.udp: UdpPair | None = None
        self.sessions = SessionRegistry(
            Caps(
                sessions=config.max_sessions,
                sessions_per_client=config.max_sessions_per_client,
                sessions_per_connection=config.max_sessions_per_connection,
                publishers=config.max_publishers,
                publishers_per_client=config.max_publishers_per_client,
            )
        )
        self.routes = PacketRoutes()
        self.inbound = Inbound(self.sessions, self.routes, clock, time.time)
        self.multicast = MulticastService(
            config.multicast_spec(),
            multicast_interface(config.multicast_interface, config.host),
            lambda path: self.config.path_settings(path).multicast,
            self.cname_host,
            lambda path: self.config.encryption_for(path) != "no",  # the group is SRTP (issue 15)
        )
        self.recordings = Recordings(config)  # live paths with record = true, written to files
        self.paths = Paths(
            config, catalog, self.multicast, self.recordings, self.sessions.on_path, self.server_header
        )
        # a cluster of nodes on Redis (streamd.cluster): path claims, edge relays, balancing
        self.cluster = (
            Cluster(
                config,
                load=lambda: len(self.sessions),
                draining=lambda: self.relocator.relocations.draining,
                drain_targets=lambda: self.relocator.relocations.drain_to,
                lost=self._path_lost,
            )
            if config.cluster is not None
            else None
        )
        self.publishing = Publishing(  # ANNOUNCE/RECORD
            config,
            self.sessions,
            self.routes,
            self.paths,
            self._udp_ports,
            clock,
            overloaded=lambda session, why: self.lifecycle.begin(session, why, send_bye=True),
            claims=self.cluster,  # None outside a cluster
            send_rtcp=self._send_rtcp,  # keyframe requests (PLI) to UDP publishers
            cname=f"streamd@{self.cname_host}",
        )
        self.lifecycle = Lifecycle(
            self.sessions, self.routes, self.multicast, self.publishing.unpublish, lambda: self.connections
        )
        self.relocator = Relocator(config, self.sessions, lambda: self.connections, self.lifecycle)
        moved = self.relocator.moved
        if self.cluster is not None:
            self.cluster.attach(
                lambda path: self.paths.relay_hooks(path, "edge relay"),
                lambda path: path in self.paths.live,
                self.server_header,
            )
            assert self.cluster.edge is not None
            self.paths.remote = self.cluster.edge.pull
            moved = self.cluster.moved(self.relocator.moved)
        self.player = PlayerHandlers(
            PlayerContext(
                config=config,
                sessions=self.sessions,
                routes=self.routes,
                paths=self.paths,
                multicast=self.multicast,
                ender=self.lifecycle,
                publishers=self.publishing,
                udp=None,
                unit_cache=UnitCache(),  # small files' access units, shared by their sessions
                cname_host=self.cname_host,
                server_header=self.server_header,
                clock=clock,
            )
        )
        self.authenticator = Authenticator(
            Policy(config.users),
            realm=config.realm,
            methods=tuple(config.auth_methods),
            nonces=NonceBook(config.nonce_lifetime, config.max_nonces_per_client),
            limits=LoginLimits(config.login_free_failures, config.login_backoff, config.login_max_backoff),
        )
        # what RTSP, tunnels and HTTP ask: the local users, behind JWT / hook when configured
        self.authorizer = authorizer or with_external(config, self.authenticator)
        # strict encryption (per server or path) refuses what arrives in clear, before credentials
        self.encryption = EncryptionGate(self.authorizer, config.encryption_for)
        self.authorizer = self.encryption
        # connections without an authorized request yet, and when they opened (auth_deadline)
        self._unauthorized: dict[RtspConnection, float] = {}
        self.auth_counters: dict[str, int] = {"auth_deadline_closes": 0}
        self.dispatcher = Dispatcher(
            self.server_header,
            method_table(self.player, self.publishing),
            moved,
            self.authorizer,
            self.sessions.get,
            clock,
            authorized=lambda client: self._unauthorized.pop(client, None),  # type: ignore[arg-type]
        )
        self._servers: list[asyncio.AbstractServer] = []
        self._rtsp_listener: asyncio.AbstractServer | None = None
        self._rtsps_listener: asyncio.AbstractServer | None = None
        # TLS (RTSPS here, HTTPS on the HTTP side): the certificate, reloaded when its files change
        self.certificates: Certificates | None = None
        self.rtsps: Handshakes | None = None
        self._handshakes: list[Handshakes] = []  # every TLS listener's (RTSPS, HTTPS): for metrics
        self._reaper: asyncio.Task[None] | None = None
        # set by the HTTP side: takes over an RTSP-port connection whose first request is HTTP
        # (RTSP-over-HTTP tunnelling, or a browser pointed at the RTSP port)
        self.http_hand_over: Callable[..., None] | None = None
        # set by streamd.workers: hands a connection to the sibling worker holding the session its
        # request names (True: handed over, nothing to answer here)
        self.session_elsewhere: Callable[[RtspConnection, Request], Awaitable[bool]] | None = None

    def _send_rtcp(self, data: bytes, address: tuple[str, int]) -> None:
        if self.udp is not None:
            self.udp.send_rtcp(data, address)

    def _udp_ports(self) -> tuple[int, int] | None:
        return (self.udp.rtp_port, self.udp.rtcp_port) if self.udp is not None else None

    # --- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        if self.config.udp:
            self.udp = UdpPair(self.inbound.rtcp_datagram, self.inbound.rtp_datagram)
            await self.udp.open(self.config.host, self.config.rtp_port)
            self.player.c.udp = self.udp
        shared = int(self.config.workers) > 1  # worker processes share the listening ports
        if self.config.tls:
            assert self.config.tls_cert is not None and self.config.tls_key is not None
            self.certificates = Certificates(self.config.tls_cert, self.config.tls_key)
            self.rtsps = self.handshakes("RTSPS")
        if self.config.rtsp_listen != "off":
            host = "127.0.0.1" if self.config.rtsp_listen == "loopback" else self.config.host
            self._rtsp_listener = await loop.create_server(
                lambda: RtspConnection(self),
                host,
                self.config.rtsp_port,
                reuse_address=True,
                reuse_port=shared or None,
                start_serving=not shared,  # a worker listens once its HTTP side is up (serve())
            )
            self._servers.append(self._rtsp_listener)
        if self.rtsps is not None:
            rtsps = self.rtsps
            self._rtsps_listener = await loop.create_server(
                lambda: TlsAcceptor(rtsps, lambda: RtspConnection(self)),
                self.config.host,
                self.config.rtsps_port,
                reuse_address=True,
                reuse_port=shared or None,
                start_serving=not shared,  # a worker listens once its HTTP side is up (serve())
            )
            self._servers.append(self._rtsps_listener)
        self._reaper = loop.create_task(self._reap(), name="session reaper")
        if self.cluster is not None:
            await self.cluster.start(self.rtsp_port)

    async def serve(self) -> None:
        """Start accepting (worker processes: once the HTTP side takes over HTTP requests, since
        the kernel sends connections to any worker that listens on the shared port)."""
        for server in self._servers:
            await server.start_serving()

    def handshakes(self, what: str) -> Handshakes:
        """TLS handshakes for one listener (RTSPS, HTTPS): this certificate, deadline and limits."""
        assert self.certificates is not None
        handshakes = Handshakes(
            self.certificates.front_context(),
            self.config.tls_handshake_timeout,
            Admission(
                self.config.max_connections, self.config.max_connections_per_client, f"{what} handshakes"
            ),
            what,
        )
        self._handshakes.append(handshakes)
        return handshakes

    @property
    def rtsp_port(self) -> int:
        listener = self._rtsp_listener
        return listener.sockets[0].getsockname()[1] if listener is not None else self.config.rtsp_port

    @property
    def rtsps_port(self) -> int | None:
        """The RTSPS port once it listens (None without TLS)."""
        listener = self._rtsps_listener
        return listener.sockets[0].getsockname()[1] if listener is not None else None

    async def stop(self) -> None:
        """Stop cleanly: every playing client gets RTCP BYE, then sockets close."""
        for server in self._servers:
            server.close()
        if self._reaper is not None:
            self._reaper.cancel()
        self.relocator.close()
        for session in self.sessions.values():
            await self.lifecycle.end(session, "server shutting down", send_bye=True)
        await self.lifecycle.wait()
        self.multicast.close()
        await self.paths.close()
        if self.cluster is not None:
            await self.cluster.close()  # release our claims, unregister
        for connection in list(self.connections):
            connection.close()
        await self.recordings.close()  # finish the files being written (MP4: the moov)
        for server in self._servers:
            await server.wait_closed()
        if self.udp is not None:
            await asyncio.sleep(0.05)  # let the BYE datagrams leave
            self.udp.close()

    def _path_lost(self, path: str, node: str) -> None:
        """The cluster gave ``path`` to another node (we were cut off past the claim's TTL)."""
        for session in self.sessions.values():
            if isinstance(session, PublisherSession) and session.publishing.name == path:
                self.lifecycle.begin(session, f"{path} is now published on {node}", send_bye=True)

    async def _reap(self) -> None:
        """Every ``reap_interval``: end timed-out sessions, close idle connections without any."""
        idle_after = max(self.config.session_timeout, self.config.min_session_timeout)
        while True:
            await asyncio.sleep(self.config.reap_interval)
            now = self.clock()
            await self.lifecycle.reap(now)
            for connection in list(self.connections):
                if not connection.sessions and now - connection.last_activity > idle_after:
                    log.info("%s: idle for %d s; closing", connection.label, idle_after)
                    connection.close()
            self.close_unauthorized(now)

    def close_unauthorized(self, now: float) -> None:
        """Close connections that sent no authorized request within ``auth_deadline`` of opening."""
        deadline = self.config.auth_deadline
        for connection, opened in list(self._unauthorized.items()):
            if now - opened > deadline:
                log.info(
                    "%s: no authorized request in %.0f s (auth_deadline); closing", connection.label, deadline
                )
                self.auth_counters["auth_deadline_closes"] += 1
                del self._unauthorized[connection]
                connection.close()

    # --- what connections ask (streamd.connection.ConnectionOwner) ----------------------------

    def connection_opened(self, connection: RtspConnection) -> None:
        self.connections.add(connection)
        self._unauthorized[connection] = self.clock()
        log.debug("%s: connected", connection.label)

    def connection_closed(self, connection: RtspConnection) -> None:
        self.connections.discard(connection)
        self._unauthorized.pop(connection, None)
        self.connection_limits.release(connection.peer[0])
        self.lifecycle.connection_closed(connection)
        log.debug("%s: disconnected", connection.label)

    async def handle(self, connection: RtspConnection, request: Request) -> tuple[Response, Any]:
        if self.session_elsewhere is not None and await self.session_elsewhere(connection, request):
            return Response(200), None  # goes nowhere: the connection is another worker's now
        return await self.dispatcher.handle(connection, request)

    def interleaved_received(self, connection: RtspConnection, frame: InterleavedFrame) -> None:
        self.inbound.interleaved(connection, frame.channel, frame.payload)

    # --- what the HTTP side and embedding programs see (PathsView, SessionView) ---------------

    @property
    def live(self) -> dict[str, LivePath]:
        return self.paths.live

    @property
    def relays(self) -> dict[str, Relay]:
        return self.paths.relays

    @property
    def web_viewers(self) -> Counter[str]:
        return self.paths.web_viewers

    async def resolve(self, path: str) -> Resolved:
        """What a DESCRIBE of ``path`` would describe (the HTTP side shows the same)."""
        return await self.paths.resolve(path)

    def live_paths(self) -> list[str]:
        return self.paths.live_paths()

    def viewers(self, path: str) -> int:
        return self.paths.viewers(path)

    def add_live(self, live: LivePath) -> None:
        self.paths.add_live(live)

    def remove_live(self, live: LivePath, label: str = "") -> None:
        self.paths.remove_live(live, label)

    def snapshot(
        self, *, private: bool = True, offset: int = 0, limit: int | None = None
    ) -> list[dict[str, object]]:
        """Sessions as plain data (the JSON API, metrics); ids and addresses only when ``private``."""
        return snapshot(self.sessions.values(), time.monotonic(), private=private, offset=offset, limit=limit)

    def auth_metrics(self) -> dict[str, int]:
        """Login limits' counters as plain numbers (for /metrics)."""
        tls = {
            "encryption_refusals": self.encryption.refused,
            "tls_handshakes_failed": sum(h.counters["failed"] for h in self._handshakes),
            "tls_handshakes_timed_out": sum(h.counters["timed_out"] for h in self._handshakes),
            "tls_certificate_reloads": self.certificates.reloads if self.certificates else 0,
        }
        return {**self.authenticator.counters, **self.auth_counters, **tls}

    def session_count(self) -> int:
        return len(self.sessions)
