"""The ``/hls/...`` routes (layout in :mod:`streamd.hls`): live paths go to
:mod:`streamd.hls.live_routes`, files to :class:`streamd.hls.vod.VodService`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from streamd.hls import live_routes, live_service
from streamd.hls.vod import VodService
from streamd.rtsp.errors import RtspError

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from streamd.catalog import Catalog
    from streamd.http.backend import HttpBackend

BACKEND_KEY = web.AppKey("hls_backend", object)
CATALOG_KEY = web.AppKey("hls_catalog", object)
VOD_KEY = web.AppKey("hls_vod", VodService)
MULTIVARIANT = "/hls/{path:.+}/index.m3u8"
OBJECT = "/hls/{path:.+}/{rendition:[a-z0-9_]+}/{name:[^/]+}"
# canonical route names (streamd/http/access.py RULES): every one reads its path
ROUTE_NAMES = ("/hls/{path}/index.m3u8", "/hls/{path}/{rendition}/{name}")


def add_hls_routes(
    app: web.Application, server: HttpBackend, catalog: Catalog, registry: CollectorRegistry | None = None
) -> None:
    app[BACKEND_KEY] = server
    app[CATALOG_KEY] = catalog
    app[VOD_KEY] = VodService(catalog, server.config)
    app[live_routes.LIVE_KEY] = live = live_service.from_config(
        server.live, server.web_viewers, server.config
    )
    app.on_cleanup.append(lambda _app: live.close())
    if registry is not None:  # streamd_hls_requests_total: what reached us (behind a cache: its misses)
        registry.register(live_service.RequestCollector(live))
    app.add_routes([web.get(MULTIVARIANT, _multivariant), web.get(OBJECT, _object)])


def _path(request: web.Request) -> str:
    path = "/".join(p for p in request.match_info["path"].split("/") if p not in ("", "."))
    if not path or len(path) > 4096 or "\0" in path:
        raise RtspError(400, "invalid path")
    return path


async def _is_live(server: HttpBackend, catalog: Catalog, path: str) -> bool:
    """As ``Paths.resolve`` decides: a path being published or relayed, or one waiting for a
    publisher with no file of that name."""
    if server.config.path_settings(path).source is not None:
        return True
    live = server.live.get(path)
    if live is not None and live.online:
        return True
    on_disk = catalog.media_dir is not None and (catalog.media_dir / path).is_file()
    return (live is not None or server.config.accepts_publisher(path)) and not on_disk


async def _multivariant(request: web.Request) -> web.StreamResponse:
    server: HttpBackend = request.app[BACKEND_KEY]  # type: ignore[assignment]
    catalog: Catalog = request.app[CATALOG_KEY]  # type: ignore[assignment]
    path = _path(request)
    if await _is_live(server, catalog, path):
        return await live_routes.serve(request, server, path, None, "index.m3u8")
    return await request.app[VOD_KEY].serve(request, path, None, "index.m3u8")


async def _object(request: web.Request) -> web.StreamResponse:
    server: HttpBackend = request.app[BACKEND_KEY]  # type: ignore[assignment]
    catalog: Catalog = request.app[CATALOG_KEY]  # type: ignore[assignment]
    path = _path(request)
    rendition, name = request.match_info["rendition"], request.match_info["name"]
    if await _is_live(server, catalog, path):
        return await live_routes.serve(request, server, path, rendition, name)
    return await request.app[VOD_KEY].serve(request, path, rendition, name)
