"""HTTPS for the web side: the same routes behind TLS, and the plain port's redirect to them.

The HTTPS listener runs the same front as the HTTP port (pages, API, ``/mp4``, ``/files``,
RTSP-over-HTTP tunnels, which become RTSP over HTTPS) behind :class:`streamd.tls.acceptor.TlsAcceptor`,
with the certificate the RTSPS listener uses. With ``https_redirect`` the plain port answers
every aiohttp route with 308 to the same URL over HTTPS; tunnels are not redirected (no RTSP
client follows a redirect there): ``encryption = "strict"`` is what refuses them in clear.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

HTTPS_PORT_KEY = web.AppKey("https_port", object)  # a callable: the bound HTTPS port, or None


def redirect_middleware(https_port: Callable[[], int | None]) -> Callable[..., Awaitable[web.StreamResponse]]:
    """308 from http:// to https:// for every request that arrived in clear (HTTPS running)."""

    @web.middleware
    async def to_https(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        port = https_port()
        if port is None or request.secure:
            return await handler(request)
        host = request.url.host or "127.0.0.1"
        host = f"[{host}]" if ":" in host else host
        authority = host if port == 443 else f"{host}:{port}"
        raise web.HTTPPermanentRedirect(f"https://{authority}{request.rel_url}")

    return to_https
