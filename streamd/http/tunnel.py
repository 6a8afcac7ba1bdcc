"""RTSP over HTTP, the QuickTime scheme: a GET carries server-to-client bytes, a POST client-to-server.

The client opens two connections with the same ``x-sessioncookie``: the GET's response (headers,
then an endless body) carries RTSP responses and interleaved RTP; the POST's body is base64 text
of RTSP requests and interleaved RTCP. Each pair runs an ordinary :class:`RtspConnection` over a
small adapter transport, so the tunnel is invisible to the RTSP code. Both halves may arrive on
the RTSP port or the HTTP port; the GET must come first (as every client does it).

Clients of the live555 family (VLC, openRTSP) send their RTCP receiver reports as raw interleaved
``$`` frames on the GET connection, their only keep-alive while playing: frames from the GET side
go to the same RTSP connection as the POST side's, through their own parser (the two byte streams
are never mixed mid-message). Anything else on the GET side is ignored.

A GET waits at most ``tunnel_pairing_timeout`` for its POST, one client address may hold at most
``max_tunnel_pending_per_client`` such waiting GETs (so one client cannot use up the tunnels of
everyone), and a POST joins only a GET from its own address (a cookie seen elsewhere takes no
tunnel over).

The GET half is authorized like any HTTP request (``read`` of the path in its URL, with its
``Authorization`` header or ``?jwt=``): a 401 lets the client retry with credentials, as ffmpeg
does. The POST half is write-only (clients read no answer to it) and joins only a GET that
passed. The RTSP requests inside the tunnel go through the RTSP dispatcher, authorized there.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote, urlsplit

from streamd.auth.model import AuthRequest
from streamd.connection import ConnectionOwner, RtspConnection
from streamd.http.b64stream import Base64Error, Base64Stream
from streamd.rtsp.message import InterleavedFrame, Request, Response
from streamd.rtsp.parser import MessageParser, ParseError

if TYPE_CHECKING:
    from streamd.auth.model import Authorizer

log = logging.getLogger(__name__)

TUNNEL_CONTENT_TYPE = "application/x-rtsp-tunnelled"
MAX_TUNNELS = 1024
REFUSALS = {401: "authentication required", 403: "not allowed", 503: "too many failed logins; try later"}
MAX_HELD = 64 * 1024  # bytes a GET half may send while it is being authorized
_COOKIE = re.compile(r"[\x21-\x7e]{1,128}")


def is_tunnel_request(request: Request) -> bool:
    """A GET or POST that names a tunnel (by its cookie) rather than a web page."""
    return request.method in ("GET", "POST") and "x-sessioncookie" in request.headers


class TunnelHub:
    """Pairs GET and POST halves by cookie; one per server."""

    def __init__(self, server: ConnectionOwner, authorizer: Authorizer | None = None) -> None:
        self.server = server
        self.authorizer = authorizer  # None: every GET may open a tunnel
        self.tunnels: dict[str, Tunnel] = {}
        self._checks: set[asyncio.Task[None]] = set()
        self.pending: Counter[str] = Counter()  # GETs still waiting for their POST, per client address
        # set by streamd.workers: hands a POST whose GET is on a sibling worker over to it (True: done)
        self.elsewhere: Callable[[asyncio.Transport, Request, bytes], Awaitable[bool]] | None = None

    def accept(self, transport: asyncio.Transport, request: Request, rest: bytes) -> None:
        """Take over ``transport``, whose first request was ``request`` (``rest``: bytes after it)."""
        cookie = request.headers.get("x-sessioncookie", "")
        if not _COOKIE.fullmatch(cookie):
            _refuse(transport, 400, "missing or invalid x-sessioncookie")
        elif request.method == "GET":
            client = _client(transport)
            limit = self.server.config.max_tunnel_pending_per_client
            if cookie in self.tunnels:
                _refuse(transport, 409, "x-sessioncookie already in use")
            elif self.pending[client] >= limit:
                _refuse(transport, 503, f"{client} has {limit} tunnels waiting for their POST already")
            elif len(self.tunnels) >= MAX_TUNNELS:
                _refuse(transport, 503, "too many tunnels")
            elif self.authorizer is None:
                self._open(transport, request, cookie, rest)
            else:
                held = _Held(rest)
                transport.set_protocol(held)
                task = asyncio.get_running_loop().create_task(self._authorize(transport, request, held))
                self._checks.add(task)
                task.add_done_callback(self._checks.discard)
        else:
            tunnel = self.tunnels.get(cookie)
            if tunnel is None and self.elsewhere is not None:  # its GET may be on a sibling worker
                transport.pause_reading()
                task = asyncio.get_running_loop().create_task(self._post_elsewhere(transport, request, rest))
                self._checks.add(task)
                task.add_done_callback(self._checks.discard)
            elif tunnel is None:
                _refuse(transport, 404, "no tunnel with this x-sessioncookie (send the GET first)")
            elif _client(transport) != tunnel.client:
                _refuse(transport, 403, "this tunnel's GET came from another client address")
            elif _secure(transport) != _secure(tunnel.get):  # RTSP requests travel on the POST
                _refuse(transport, 403, "this tunnel's GET and POST differ in TLS (both HTTPS or neither)")
            else:
                tunnel.attach_post(transport, rest)

    async def _post_elsewhere(self, transport: asyncio.Transport, request: Request, rest: bytes) -> None:
        assert self.elsewhere is not None
        if not await self.elsewhere(transport, request, rest):
            transport.resume_reading()
            _refuse(transport, 404, "no tunnel with this x-sessioncookie (send the GET first)")

    def _open(self, transport: asyncio.Transport, request: Request, cookie: str, rest: bytes) -> None:
        tunnel = Tunnel(self, cookie, transport, request.version)
        self.tunnels[cookie] = tunnel
        if rest:
            tunnel.get_side.data_received(rest)

    async def _authorize(self, transport: asyncio.Transport, request: Request, held: _Held) -> None:
        """Open the tunnel if the GET's user may read its path; else answer the refusal."""
        assert self.authorizer is not None
        path, token = tunnel_target(request.uri)
        auth = AuthRequest(
            protocol="http",
            method=request.method,
            uri=request.uri,
            client=_client(transport),
            action="read",
            path=path,
            authorization=request.headers.get("Authorization"),
            token=token,
            secure=_secure(transport),
        )
        try:
            result = await self.authorizer.authorize(auth, asyncio.get_running_loop().time())
        except asyncio.CancelledError:  # the server stops
            transport.close()
            raise
        except Exception:  # a bug in an authorizer: this client is refused, nobody else notices
            log.exception("client %s: authorizing a tunnel failed", auth.client)
            _refuse(transport, 500, "internal error")
            return
        if transport.is_closing() or held.overflowed:
            transport.close()
            return
        if not result.allowed:
            status = result.status if result.status in REFUSALS else 403
            _refuse(transport, status, REFUSALS[status], result.headers, result.reason, result.challenges)
            return
        cookie = request.headers.get("x-sessioncookie", "")
        if cookie in self.tunnels:  # another GET with this cookie was faster
            _refuse(transport, 409, "x-sessioncookie already in use")
        else:
            self._open(transport, request, cookie, bytes(held.data))

    def close_all(self) -> None:
        for task in list(self._checks):
            task.cancel()
        for tunnel in list(self.tunnels.values()):
            tunnel.close()


def tunnel_target(uri: str) -> tuple[str, str | None]:
    """The media path a tunnel GET names (``/cams/door``, also as an absolute URL) and its
    ``?jwt=`` token, if any."""
    try:
        parts = urlsplit(uri)
    except ValueError:  # e.g. an unclosed IPv6 bracket: names no path
        return "", None
    path = "/".join(p for p in unquote(parts.path).split("/") if p not in ("", "."))
    token = parse_qs(parts.query).get("jwt", [None])[0]
    return path, token


class _Held(asyncio.Protocol):
    """Keeps what a GET half sends while it is being authorized (bounded; beyond, it closes)."""

    def __init__(self, rest: bytes) -> None:
        self.data = bytearray(rest)
        self.overflowed = False

    def data_received(self, data: bytes) -> None:
        if len(self.data) + len(data) > MAX_HELD:
            self.overflowed = True
        else:
            self.data += data


def _client(transport: asyncio.Transport) -> str:
    peer = transport.get_extra_info("peername")
    return str(peer[0]) if peer else "?"


def _secure(transport: asyncio.BaseTransport) -> bool:
    return transport.get_extra_info("ssl_object") is not None


def _refuse(
    transport: asyncio.Transport,
    status: int,
    reason: str,
    headers: dict[str, str] | None = None,
    why: str = "",
    challenges: tuple[str, ...] = (),
) -> None:
    """Answer and close; ``why`` (for the log only) when it differs from what the client is told."""
    log.info("client %s: RTSP-over-HTTP request refused: %d %s", _client(transport), status, why or reason)
    response = Response(status, version="HTTP/1.0", body=(reason + "\n").encode())
    for challenge in challenges:
        response.headers.add("WWW-Authenticate", challenge)
    for name, value in (headers or {}).items():
        response.headers[name] = value
    response.headers["Content-Type"] = "text/plain; charset=utf-8"
    response.headers["Connection"] = "close"
    transport.set_protocol(asyncio.Protocol())  # ignore whatever else arrives
    transport.write(bytes(response))
    transport.close()


class Tunnel:
    """One GET/POST pair and the RTSP connection running over it."""

    def __init__(self, hub: TunnelHub, cookie: str, get: asyncio.Transport, version: str) -> None:
        self.hub = hub
        self.cookie = cookie
        self.get = get
        self.post: asyncio.Transport | None = None
        self.closed = False
        self.client = _client(get)
        self.paired = False
        hub.pending[self.client] += 1
        timeout = hub.server.config.tunnel_pairing_timeout
        self._pairing = asyncio.get_running_loop().call_later(timeout, self._pairing_expired, timeout)
        response = Response(200, version="HTTP/1.0" if version == "HTTP/1.0" else "HTTP/1.1")
        for name, value in (
            ("Server", hub.server.server_header),
            ("Connection", "close"),
            ("Cache-Control", "no-store"),
            ("Pragma", "no-cache"),
            ("Content-Type", TUNNEL_CONTENT_TYPE),
        ):
            response.headers[name] = value
        self.get_side = _GetSide(self)
        get.set_protocol(self.get_side)
        get.write(bytes(response))
        self.connection = RtspConnection(hub.server)
        self.connection.connection_made(TunnelTransport(self))
        self.connection.label += " (HTTP tunnel)"

    def attach_post(self, transport: asyncio.Transport, rest: bytes) -> None:
        self._stop_waiting()
        if self.post is not None:  # a client may start a new POST when the old one is used up
            self.post.close()
        self.post = transport
        side = _PostSide(self, transport)
        transport.set_protocol(side)
        if rest:
            side.data_received(rest)

    def frame_received(self, frame: InterleavedFrame) -> None:
        """An interleaved frame (RTCP) from either half, for this tunnel's RTSP connection."""
        if self.closed:
            return
        connection = self.connection
        connection.last_activity = asyncio.get_running_loop().time()
        connection.server.interleaved_received(connection, frame)

    def _stop_waiting(self) -> None:
        """Paired (or closed): no longer counted against the client's waiting GETs."""
        self._pairing.cancel()
        if not self.paired:
            self.paired = True
            self.hub.pending[self.client] -= 1
            if self.hub.pending[self.client] <= 0:
                del self.hub.pending[self.client]

    def _pairing_expired(self, timeout: float) -> None:
        log.info("%s: no POST within %g s; closing the tunnel", self.connection.label, timeout)
        self.close()

    def post_lost(self, transport: asyncio.Transport) -> None:
        if self.post is transport:
            self.post = None

    def close(self) -> None:
        """End the tunnel: both connections close and the RTSP connection's sessions end."""
        if self.closed:
            return
        self.closed = True
        self._stop_waiting()
        self.hub.tunnels.pop(self.cookie, None)
        if self.post is not None:
            self.post.close()
        if not self.get.is_closing():
            self.get.close()
        self.connection.connection_lost(None)


class TunnelTransport(asyncio.Transport):
    """What the RTSP connection writes to and closes: the GET side, as one transport."""

    def __init__(self, tunnel: Tunnel) -> None:
        super().__init__()
        self._tunnel = tunnel

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "socket":  # two sockets, not one (RtspConnection.give_away must not take the GET's)
            return default
        return self._tunnel.get.get_extra_info(name, default)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not self._tunnel.closed:
            self._tunnel.get.write(data)

    def is_closing(self) -> bool:
        return self._tunnel.closed or self._tunnel.get.is_closing()

    def close(self) -> None:
        self._tunnel.get.close()  # connection_lost of the GET side ends the tunnel

    def abort(self) -> None:
        self._tunnel.get.abort()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self._tunnel.get.set_write_buffer_limits(high, low)

    def get_write_buffer_size(self) -> int:
        return self._tunnel.get.get_write_buffer_size()


class _GetSide(asyncio.Protocol):
    """The server-to-client connection: flow control goes to the RTSP connection, and the client's
    interleaved frames (RTCP receiver reports, live555 style) to the tunnel."""

    def __init__(self, tunnel: Tunnel) -> None:
        self.tunnel = tunnel
        self.parser: MessageParser | None = MessageParser()

    def data_received(self, data: bytes) -> None:
        if self.parser is None:
            return  # out of step once: ignore the rest rather than buffer it
        label = self.tunnel.connection.label
        for event in self.parser.feed(data):
            if isinstance(event, InterleavedFrame):
                self.tunnel.frame_received(event)
            elif isinstance(event, ParseError):
                log.info("%s: unreadable data on the tunnel's GET connection: %s", label, event.reason)
            else:
                log.info("%s: an RTSP message on the tunnel's GET connection ignored", label)
        if self.parser.failed or self.parser.detached:
            log.info("%s: ignoring the rest of the tunnel's GET connection", label)
            self.parser = None

    def pause_writing(self) -> None:
        self.tunnel.connection.pause_writing()

    def resume_writing(self) -> None:
        self.tunnel.connection.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self.tunnel.close()


class _PostSide(asyncio.Protocol):
    """The client-to-server connection: base64 text in, RTSP bytes to the connection."""

    def __init__(self, tunnel: Tunnel, transport: asyncio.Transport) -> None:
        self.tunnel = tunnel
        self.transport = transport
        self.decoder = Base64Stream()

    def data_received(self, data: bytes) -> None:
        try:
            decoded = self.decoder.feed(data)
        except Base64Error as exc:
            log.warning("%s: %s; closing the tunnel", self.tunnel.connection.label, exc)
            self.tunnel.close()
            return
        if decoded and not self.tunnel.closed:
            self.tunnel.connection.data_received(decoded)

    def connection_lost(self, exc: Exception | None) -> None:
        self.tunnel.post_lost(self.transport)
