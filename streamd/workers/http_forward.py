"""HTTP requests that belong to a sibling worker, carried there whole over its private socket.

Each worker also serves its aiohttp application on a unix socket in the parent's private folder
(mode 0700, like :mod:`.internal`'s RTSP socket). A request that :mod:`.http_owner` places on a
sibling is sent there as it came (method, path and query, headers but the hop-by-hop ones, the
body: small, read whole and bounded), and the sibling's response is streamed back as it comes.
The client's address and whether it used TLS travel in two headers believed only on that socket,
so the owner authorizes the request through the one Authorizer, counts it against the client's
limits and logs it as if the client had connected there; on the public ports the same
headers are ignored (and replaced when the request is forwarded).

The header rules are plain functions (:func:`request_headers`, :func:`response_headers`,
:func:`forwarded_client`); :class:`Forwarder` does the I/O.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from yarl import URL

log = logging.getLogger("streamd")

CLIENT_HEADER = "X-Streamd-Client"  # the client's address, as the receiving worker saw it
PROTO_HEADER = "X-Streamd-Proto"  # "https" when the client's connection was TLS
OURS = frozenset({CLIENT_HEADER.lower(), PROTO_HEADER.lower()})
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
    }
)
MAX_BODY = 64 * 1024  # request bodies forwarded (SDP offers, ICE fragments; the app takes no more)
CHUNK = 64 * 1024
CONNECT_TIMEOUT = 5.0  # to reach a sibling's socket (or a free connection to it)
READ_TIMEOUT = 60.0  # between bytes of the sibling's answer (a blocking playlist reload waits)
# open connections to each sibling, i.e. requests in flight there (a blocking playlist reload holds
# one while it waits); past it a request waits up to CONNECT_TIMEOUT for one to come free, then 502
MAX_CONNECTIONS = 4096
# aiohttp adds them unless the client sent them (Content-Type: to a body)
UNSENT = ("User-Agent", "Accept", "Accept-Encoding", "Content-Type")

CORS = {"Access-Control-Allow-Origin": "*"}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Placement = Callable[[web.Request], Awaitable[int | None]]  # the sibling a request belongs to


def socket_path(run_dir: Path, index: int) -> Path:
    return run_dir / f"worker-{index}-http.sock"


def _dropped(headers: Iterable[tuple[str, str]]) -> set[str]:
    """Hop-by-hop headers: the fixed ones and whatever ``Connection`` names (RFC 9110 7.6.1)."""
    named = {
        token.strip().lower()
        for name, value in headers
        if name.lower() == "connection"
        for token in value.split(",")
        if token.strip()
    }
    return HOP_BY_HOP | named


def request_headers(headers: Iterable[tuple[str, str]], client: str, secure: bool) -> list[tuple[str, str]]:
    """The headers a forwarded request carries: the client's (repeated ones kept, in order) but
    the hop-by-hop ones and any of ours it sent, then ours."""
    headers = list(headers)
    dropped = _dropped(headers) | OURS
    kept = [(name, value) for name, value in headers if name.lower() not in dropped]
    return [*kept, (CLIENT_HEADER, client), (PROTO_HEADER, "https" if secure else "http")]


def response_headers(headers: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """The sibling's response headers as the client gets them (several ``WWW-Authenticate`` kept)."""
    headers = list(headers)
    dropped = _dropped(headers)
    return [(name, value) for name, value in headers if name.lower() not in dropped]


def forwarded_client(headers: object) -> tuple[str, str]:
    """(client address, scheme) from a forwarded request's headers; an address that is not one
    becomes "" (no address), a scheme other than https is http."""
    get = getattr(headers, "get", None)
    raw = str(get(CLIENT_HEADER, "") if get else "").strip()
    try:
        client = str(ipaddress.ip_address(raw)) if raw else ""
    except ValueError:
        client = ""
    proto = str(get(PROTO_HEADER, "") if get else "").strip().lower()
    return client, "https" if proto == "https" else "http"


def _text_pairs(raw: Iterable[tuple[bytes, bytes]]) -> list[tuple[str, str]]:
    return [(name.decode("latin-1"), value.decode("latin-1")) for name, value in raw]


class BodyTooLarge(Exception):
    pass


async def _body(request: web.Request) -> bytes:
    """The request's body, read whole (it is small: an SDP offer, an ICE fragment) but bounded,
    so a body too large is refused here, before the sibling is bothered."""
    data = bytearray()
    async for chunk in request.content.iter_chunked(CHUNK):
        data += chunk
        if len(data) > MAX_BODY:
            raise BodyTooLarge
    return bytes(data)


class Forwarder:
    """Sends requests to siblings' private sockets (one connection pool per sibling)."""

    def __init__(self, run_dir: Path, me: int) -> None:
        self.run_dir = run_dir
        self.me = me
        self._sessions: dict[int, aiohttp.ClientSession] = {}

    def _session(self, worker: int) -> aiohttp.ClientSession:
        session = self._sessions.get(worker)
        if session is None or session.closed:
            connector = aiohttp.UnixConnector(str(socket_path(self.run_dir, worker)), limit=MAX_CONNECTIONS)
            timeout = aiohttp.ClientTimeout(total=None, connect=CONNECT_TIMEOUT, sock_read=READ_TIMEOUT)
            session = aiohttp.ClientSession(connector=connector, timeout=timeout, auto_decompress=False)
            self._sessions[worker] = session
        return session

    async def forward(self, request: web.Request, worker: int) -> web.StreamResponse:
        """``request`` answered by ``worker``: its response streamed back to the client."""
        if request.content_length is not None and request.content_length > MAX_BODY:
            return web.Response(status=413, text="413: the request body is too large\n")
        what = f"HTTP {request.method} {request.path[:200]} from {request.remote}"
        try:
            data = await _body(request) if request.body_exists else None
        except BodyTooLarge:
            log.info("%s refused: the body is larger than %d bytes", what, MAX_BODY)
            return web.Response(status=413, text="413: the request body is too large\n")
        headers = request_headers(_text_pairs(request.raw_headers), request.remote or "", request.secure)
        url = URL(f"http://worker-{worker}{request.rel_url.raw_path_qs}", encoded=True)
        response: web.StreamResponse | None = None
        try:
            async with self._session(worker).request(
                request.method,
                url,
                headers=headers,
                data=data,
                allow_redirects=False,
                skip_auto_headers=[h for h in UNSENT if h not in request.headers],
            ) as upstream:
                response = web.StreamResponse(status=upstream.status, reason=upstream.reason)
                for name, value in response_headers(_text_pairs(upstream.raw_headers)):
                    response.headers.add(name, value)
                await response.prepare(request)
                async for chunk in upstream.content.iter_chunked(CHUNK):
                    await response.write(chunk)
                await response.write_eof()
                return response
        except (aiohttp.ClientError, TimeoutError, ConnectionError) as exc:
            if response is not None and response.prepared and _client_left(request):
                # a player leaving mid-answer (a browser closing its tab) is no worker's fault
                log.debug("%s, forwarded to worker %d: the client left mid-answer", what, worker)
                return response
            reason = f"worker {worker} did not answer: {exc or type(exc).__name__}"
        log.warning("%s, forwarded to worker %d: %s", what, worker, reason)
        if response is not None and response.prepared:  # mid-answer: the client sees it cut short
            if request.transport is not None:
                request.transport.close()
            return response
        # the routes forwarded (WHEP, live HLS) answer web players on any site: so does their 502
        return web.Response(status=502, text=f"502: {reason}\n", headers=CORS)

    async def close(self) -> None:
        sessions, self._sessions = list(self._sessions.values()), {}
        await asyncio.gather(*(s.close() for s in sessions), return_exceptions=True)


def _client_left(request: web.Request) -> bool:
    return request.transport is None or request.transport.is_closing()


def middleware(private: Path, place: Placement, forwarder: Forwarder) -> Callable[..., Awaitable[Any]]:
    """Outermost on a worker's app: a request that came over ``private`` (a sibling forwarded it)
    is served here as the client's (its address and scheme from our headers); any other is
    placed, and served here or forwarded to the sibling it belongs to."""
    private_name = str(private)

    @web.middleware
    async def route(request: web.Request, handler: Handler) -> web.StreamResponse:
        transport = request.transport
        if transport is not None and transport.get_extra_info("sockname") == private_name:
            client, scheme = forwarded_client(request.headers)
            return await handler(request.clone(remote=client, scheme=scheme))
        worker = await place(request)
        if worker is None or worker == forwarder.me:
            return await handler(request)
        return await forwarder.forward(request, worker)

    return route


async def listen(runner: web.AppRunner, path: Path) -> asyncio.AbstractServer:
    """Serve ``runner``'s application on the private socket ``path`` (once the runner is set up)."""
    path.unlink(missing_ok=True)  # left by a worker that died
    factory = runner.server
    assert factory is not None
    return await asyncio.get_running_loop().create_unix_server(factory, str(path))
