"""The HTTP side: aiohttp routes in the RTSP server's event loop, and the listener that serves them.

Every connection on the HTTP port first goes through :class:`HttpFront`, which reads the first
request head: an RTSP-over-HTTP tunnel half goes to the :class:`TunnelHub` (whose GET response
must be a raw, unchunked body), anything else to aiohttp with the bytes read so far. The RTSP
port hands HTTP requests over the same way (the RTSP server's ``http_hand_over``).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from aiohttp import web

from streamd.auth.defaults import AdminRuleByDefault, unconfigured
from streamd.hls.routes import add_hls_routes
from streamd.http import fmp4, metrics
from streamd.http.access import AUTHORIZER_KEY, authorize, check, reader, refuse
from streamd.http.admin import add_admin_routes
from streamd.http.files import send_file
from streamd.http.https import redirect_middleware
from streamd.http.listing import PAGE_SIZE, describe, list_entries, public_reason, rtsp_base
from streamd.http.live_mp4 import MAX_VIEWERS, serve_live_mp4
from streamd.http.openapi import OPENAPI
from streamd.http.pages import index_page, watch_page
from streamd.http.sdp import absolute_sdp
from streamd.http.tunnel import TunnelHub, is_tunnel_request
from streamd.limits import Admission
from streamd.rtsp.errors import RtspError
from streamd.rtsp.message import Request
from streamd.rtsp.parser import MessageParser
from streamd.tls.acceptor import Handshakes, TlsAcceptor
from streamd.webrtc.chunk_cache import ChunkCollector
from streamd.webrtc.routes import add_whep_routes

if TYPE_CHECKING:
    from streamd.catalog import Catalog
    from streamd.http.backend import HttpBackend

log = logging.getLogger(__name__)

CLIENT_CLOSED = 499
"""The access log's status for a request whose client left first (nginx's convention; never sent)."""

MAX_REQUEST_BODY = 64 * 1024  # nothing here takes uploads
MAX_HEAD_BYTES = 16 * 1024
MAX_START_SECONDS = 1e7
HEAD_TIMEOUT = 30.0
LOGIN_PROBES = 200  # paths /login may ask about to find a question that needs a login

SERVER_KEY = web.AppKey("server", object)
CATALOG_KEY = web.AppKey("catalog", object)
REGISTRY_KEY = web.AppKey("registry", object)
REMUXES_KEY = web.AppKey("remuxes", Admission)
LIVE_VIEWS_KEY = web.AppKey("live_views", Admission)


def build_app(
    server: HttpBackend,
    catalog: Catalog,
    hub: TunnelHub | None = None,
    https_port: Callable[[], int | None] | None = None,
) -> web.Application:
    """The aiohttp application (without a listener: tests drive it with aiohttp's test client).

    ``https_port``: with ``https_redirect``, where requests that arrive in clear are sent."""
    redirect = [redirect_middleware(https_port)] if https_port and server.config.https_redirect else []
    app = web.Application(client_max_size=MAX_REQUEST_BODY, middlewares=[*redirect, _errors, authorize])
    app[SERVER_KEY] = server
    app[AUTHORIZER_KEY] = AdminRuleByDefault(server.authorizer, server.config)
    app[CATALOG_KEY] = catalog
    limits = server.config
    app[REMUXES_KEY] = Admission(limits.max_remuxes, limits.max_remuxes_per_client, "/mp4 remuxes")
    app[LIVE_VIEWS_KEY] = Admission(MAX_VIEWERS, limits.max_remuxes_per_client, "live /mp4 views")
    app[REGISTRY_KEY] = metrics.make_registry(
        lambda: server.snapshot(private=False), lambda: len(hub.tunnels) if hub else 0, server.auth_metrics
    )
    app.add_routes(
        [
            web.get("/", _index),
            web.get("/login", _login),
            web.get("/watch/{path:.+}", _watch),
            web.get("/sdp/{path:.+}", _sdp),
            web.get("/files/{path:.+}", _files),
            web.get("/mp4/{path:.+}", _mp4),
            web.get("/api/v1/paths", _api_paths),
            web.get("/api/v1/sessions", _api_sessions),
            web.get("/api/v1/multicast", _api_multicast),
            web.get("/api/v1/cluster", _api_cluster),
            web.get("/api/v1/openapi.json", _openapi),
            web.get("/metrics", _metrics),
        ]
    )
    add_admin_routes(app, server)
    add_hls_routes(app, server, catalog, app[REGISTRY_KEY])  # type: ignore[arg-type]  # /hls/<path>/...
    whep = add_whep_routes(app, server)  # WebRTC playback (streamd/webrtc)
    app[REGISTRY_KEY].register(ChunkCollector(whep.file_chunks))  # type: ignore[attr-defined]
    return app


# --- helpers ------------------------------------------------------------------------------------


def _server(request: web.Request) -> HttpBackend:
    return request.app[SERVER_KEY]  # type: ignore[return-value]


def _catalog(request: web.Request) -> Catalog:
    return request.app[CATALOG_KEY]  # type: ignore[return-value]


def _host(request: web.Request) -> str:
    """The address the client used to reach us, for rtsp:// links that work from where it is."""
    host = request.url.host or ""
    if not host:
        sockname = request.transport.get_extra_info("sockname") if request.transport else None
        host = str(sockname[0]) if sockname else "127.0.0.1"
    return host


def _rtsp_root(request: web.Request) -> str:
    """Links for RTSP players: ``rtsps://`` to a page fetched over HTTPS, or when plain RTSP is not
    reachable from outside (``rtsp_listen``); ``rtsp://`` otherwise, as before TLS."""
    server = _server(request)
    secure = server.rtsps_port is not None and (request.secure or server.config.rtsp_listen != "on")
    if secure and server.rtsps_port is not None:
        return rtsp_base(_host(request), server.rtsps_port).replace("rtsp://", "rtsps://", 1)
    return rtsp_base(_host(request), server.rtsp_port)


def _path(request: web.Request) -> str:
    """The decoded path from the URL; the catalog decides whether it is inside the media folder."""
    path = request.match_info["path"]
    if len(path) > 4096 or "\0" in path:
        raise RtspError(400, "invalid path")
    return path


def _visible(request: web.Request) -> Callable[[str], Awaitable[bool]] | None:
    """The filter for lists of paths (None: everyone may read everything, nothing to ask)."""
    return None if unconfigured(_server(request).config) else reader(request)


def _number(request: web.Request, name: str, default: float, low: float, high: float) -> float:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise RtspError(400, f"{name} must be a number") from None
    if not low <= value <= high:  # also rejects nan
        raise RtspError(400, f"{name} must be between {low:g} and {high:g}")
    return value


@web.middleware
async def _errors(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Short plain-text errors; an ``RtspError`` from the catalog keeps its status and reason.

    A client that closed its connection before its answer was written is the usual end of a
    browser leaving a page, not a server error: one debug line, no traceback."""
    try:
        return await handler(request)
    except RtspError as exc:
        status = exc.status if 400 <= exc.status < 600 else 500
        reason = public_reason(exc.reason, _catalog(request))
        return web.Response(status=status, text=f"{status}: {reason}\n")
    except ConnectionError as exc:
        log.debug("%s %s: the client went away: %s", request.method, request.path, exc)
        return web.Response(status=CLIENT_CLOSED, reason="Client Closed Request")


# --- pages --------------------------------------------------------------------------------------


async def _index(request: web.Request) -> web.Response:
    page = int(_number(request, "page", 0, 0, 1e6))
    entries, more = await list_entries(
        _catalog(request),
        _server(request),
        _rtsp_root(request),
        offset=page * PAGE_SIZE,
        visible=_visible(request),
    )
    return web.Response(text=index_page(entries, page=page, more=more), content_type="text/html")


async def _login(request: web.Request) -> web.Response:
    """Where a visitor who sees nothing yet gets the browser's login prompt (the index only
    filters, so it never asks); with credentials the browser keeps sending, back to the index.

    The prompt is the first 401 among the questions someone could answer with a login: reading
    a listed path, then ``api`` and ``metrics`` (a question nobody may answer is a 403)."""
    if request.headers.get("Authorization") is None and not request.query.get("jwt"):
        names = _server(request).live_paths() + _catalog(request).list_paths(LOGIN_PROBES)
        questions = [("read", name) for name in names] + [("api", ""), ("metrics", "")]
        for action, path in questions[: LOGIN_PROBES + 2]:
            result = await check(request, action, path)  # type: ignore[arg-type]
            if result.status == 401:
                raise refuse(request, result, "login", "")
    raise web.HTTPSeeOther("/")


async def _watch(request: web.Request) -> web.Response:
    path = _path(request)
    start = _number(request, "start", 0.0, 0.0, MAX_START_SECONDS)
    entry = await describe(_catalog(request), _server(request), _rtsp_root(request), path)
    if entry.error is not None:
        _catalog(request).locate(path)  # 403/404 for paths that are not there at all
    return web.Response(text=watch_page(entry, start), content_type="text/html")


async def _sdp(request: web.Request) -> web.Response:
    resolved = await _server(request).resolve(_path(request))
    host = _host(request)
    body = absolute_sdp(resolved.presentation, _rtsp_root(request), host)
    if request.query.get("multicast", "0") not in ("", "0"):
        path = resolved.presentation.name
        body = _server(request).multicast.sdp(path, resolved.presentation, body, secure=request.secure)
        if body is None:
            raise RtspError(
                404,
                f"{path!r} is not being sent to a multicast group now (a live path sends while an RTSP "
                "multicast reader plays, or always with multicast = true in its [paths] settings)",
            )
    return web.Response(text=body, content_type="application/sdp")


async def _files(request: web.Request) -> web.StreamResponse:
    file, _loop = _catalog(request).locate(_path(request))
    return await send_file(request, file)


async def _mp4(request: web.Request) -> web.StreamResponse:
    """Fragmented MP4 from the keyframe at or before ``start``; the remux stops if the client goes.

    A live path streams from its next keyframe for as long as it is published."""
    path = _path(request)
    server = _server(request)
    if server.config.path_settings(path).source is not None:
        await server.resolve(path)  # a relayed path: pulled now if it is not yet
    elif (
        (int(server.config.workers) > 1 or server.config.cluster is not None)
        and path not in server.live
        and server.config.accepts_publisher(path)
    ):
        await server.resolve(path)  # live in a sibling worker or on another node: pulled now
    live = server.live.get(path)
    if live is not None and live.online:
        return await serve_live_mp4(request, live, server.web_viewers, request.app[LIVE_VIEWS_KEY])
    start = _number(request, "start", 0.0, 0.0, MAX_START_SECONDS)
    video = request.query.get("video", "")  # "h264": the watch page's browser lacks the file's decoder
    if video not in ("", "h264"):
        raise web.HTTPBadRequest(text="video= takes only h264\n")
    resolved = await _catalog(request).resolve(path)  # 404/415 before any byte is sent
    return await fmp4.serve_file(
        request, path, resolved.file, start, request.app[REMUXES_KEY], to_h264=video == "h264"
    )


# --- API and metrics -----------------------------------------------------------------------------


def _json(data: object) -> web.Response:
    return web.Response(text=json.dumps(data, indent=1) + "\n", content_type="application/json")


async def _api_paths(request: web.Request) -> web.Response:
    offset = int(_number(request, "offset", 0, 0, 1e9))
    limit = int(_number(request, "limit", PAGE_SIZE, 1, 1000))
    entries, more = await list_entries(
        _catalog(request),
        _server(request),
        _rtsp_root(request),
        offset=offset,
        limit=limit,
        visible=_visible(request),
    )
    return _json({"paths": [e.as_dict() for e in entries], "more": more})


async def _api_sessions(request: web.Request) -> web.Response:
    """A page of sessions, an ``api`` action: ids and client addresses let one act on a session,
    and addresses are nobody else's business. Without users or external authorization, everyone
    still gets the list without them (as before authentication existed)."""
    offset = int(_number(request, "offset", 0, 0, 1e9))
    limit = int(_number(request, "limit", PAGE_SIZE, 1, 1000))
    server = _server(request)
    result = await check(request, "api", "")
    if not result.allowed and not unconfigured(server.config):
        raise refuse(request, result, "api", "")
    private = result.allowed
    rows = server.snapshot(private=private, offset=offset, limit=limit)
    return _json({"sessions": rows, "more": server.session_count() > offset + len(rows)})


async def _api_multicast(request: web.Request) -> web.Response:
    """The multicast groups of the paths this user may read."""
    may_read = reader(request)
    groups = [g for g in _server(request).multicast.snapshot() if await may_read(str(g.get("path", "")))]
    return _json({"groups": groups})


async def _api_cluster(request: web.Request) -> web.Response:
    """This node's view of its cluster (streamd.cluster); 404 when it is not in one."""
    cluster = getattr(_server(request), "cluster", None)
    if cluster is None:
        raise web.HTTPNotFound(text="404: this server is not in a cluster (no cluster = in its config)\n")
    return _json(cluster.status())


async def _openapi(request: web.Request) -> web.Response:
    return _json(OPENAPI)


async def _metrics(request: web.Request) -> web.Response:
    body = metrics.render(request.app[REGISTRY_KEY])  # type: ignore[arg-type]
    return web.Response(body=body, headers={"Content-Type": metrics.CONTENT_TYPE})


# --- the listener -------------------------------------------------------------------------------


class HttpService:
    """Runs the app on ``--http-port`` and takes HTTP connections over from the RTSP port."""

    def __init__(self, server: HttpBackend, catalog: Catalog, host: str, port: int) -> None:
        self.server = server
        self.host = host
        self.port = port
        self.hub = TunnelHub(server, server.authorizer)
        self.app = build_app(server, catalog, self.hub, lambda: self.https_port)
        self.runner = web.AppRunner(self.app, handler_cancellation=True, access_log=None)
        self._listener: asyncio.AbstractServer | None = None
        self._https: asyncio.AbstractServer | None = None  # the same front behind TLS (tls_cert)
        self.handshakes: Handshakes | None = None

    async def start(self) -> None:
        await self.runner.setup()
        loop = asyncio.get_running_loop()
        self._listener = await loop.create_server(
            lambda: HttpFront(self),
            self.host,
            self.port,
            reuse_address=True,
            reuse_port=int(self.server.config.workers) > 1 or None,  # worker processes share the port
        )
        if self.server.config.tls:
            handshakes = self.handshakes = self.server.handshakes("HTTPS")
            self._https = await loop.create_server(
                lambda: TlsAcceptor(handshakes, lambda: HttpFront(self)),
                self.host,
                self.server.config.https_port,
                reuse_address=True,
                reuse_port=int(self.server.config.workers) > 1 or None,
            )
        self.server.http_hand_over = self.take_over

    @property
    def bound_port(self) -> int:
        return self._listener.sockets[0].getsockname()[1] if self._listener else self.port

    @property
    def https_port(self) -> int | None:
        """The HTTPS port once it listens (None without TLS)."""
        return self._https.sockets[0].getsockname()[1] if self._https else None

    def take_over(self, transport: asyncio.Transport, request: Request, rest: bytes) -> None:
        """Serve a connection whose first request (already parsed) is HTTP."""
        if is_tunnel_request(request):
            self.hub.accept(transport, request, rest)
        else:
            self.to_aiohttp(transport, bytes(request) + rest)

    def to_aiohttp(self, transport: asyncio.Transport, data: bytes) -> None:
        protocol = self.runner.server  # a protocol factory
        assert protocol is not None
        handler = protocol()
        transport.set_protocol(handler)
        handler.connection_made(transport)
        if data:
            handler.data_received(data)

    async def stop(self) -> None:
        if self._https is not None:
            self._https.close()
        if self._listener is not None:
            self._listener.close()
        self.server.http_hand_over = None
        self.hub.close_all()
        await self.runner.cleanup()
        if self._listener is not None:
            await self._listener.wait_closed()
        if self._https is not None:
            await self._https.wait_closed()


class HttpFront(asyncio.Protocol):
    """Reads the first request head on the HTTP port, then hands the connection on."""

    def __init__(self, service: HttpService) -> None:
        self.service = service
        self.parser = MessageParser(max_header_bytes=MAX_HEAD_BYTES, max_body_bytes=MAX_REQUEST_BODY)
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self._timer = asyncio.get_running_loop().call_later(HEAD_TIMEOUT, transport.close)

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        self.buffer += data
        for event in self.parser.feed(data):
            self._cancel_timer()
            if isinstance(event, Request) and event.version.startswith("HTTP/") and is_tunnel_request(event):
                self.service.hub.accept(self.transport, event, self.parser.detach())
            else:  # a page, or something malformed: aiohttp answers it from the original bytes
                self.service.to_aiohttp(self.transport, bytes(self.buffer))
            return
        if self.parser.failed or len(self.buffer) > MAX_HEAD_BYTES:
            self._cancel_timer()
            self.service.to_aiohttp(self.transport, bytes(self.buffer))

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timer()

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


__all__ = ["HttpService", "build_app"]
