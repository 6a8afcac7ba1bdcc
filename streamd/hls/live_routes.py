"""HLS for live paths (LL-HLS): filled in by the live side of issue 17.

:func:`serve` gets every ``/hls/<path>/...`` request whose path is live (published, relayed or
waiting for a publisher); ``rendition`` is None for ``index.m3u8``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from streamd.rtsp.errors import RtspError

if TYPE_CHECKING:
    from streamd.http.backend import HttpBackend


async def serve(
    request: web.Request, server: HttpBackend, path: str, rendition: str | None, name: str
) -> web.StreamResponse:
    raise RtspError(404, f"live HLS not yet: {path!r} is a live path")
