"""Which worker an HTTP request belongs to: the one place that decides it for every route.

Most requests are served by whichever worker the kernel gave the connection. Two kinds name
something only one worker holds, and go there (:mod:`.http_forward` carries them):

- a **live path's** WebRTC offer (``POST /whep/<path>``) and its live HLS (playlists, blocking
  reloads, parts, segments, init): to the worker whose publisher holds the path, so every viewer
  shares one converter, one packet history, one segmenter and its numbering, and a viewer's
  keyframe request reaches the publisher;
- a **WebRTC session's resource** (``DELETE``/``PATCH`` of ``/whep-session/<id>`` or
  ``/whip-session/<id>``): to the worker that holds the session (asked of the siblings).

A WebRTC offer of a **file that needs converting** for browsers goes to the one worker that
converts it (:mod:`.file_placement`), so the conversion is made once for the whole server.
Other files, and paths nobody publishes, are served where the request landed, as always. A path
whose publisher left goes to the worker that still holds its ended HLS stream, if one does (its
playlist with ``EXT-X-ENDLIST`` answers the players that were waiting, as one process answers).
:func:`target_of` is the rule (plain data in, plain data out); :class:`Placement` answers it with
the worker's live paths, the parent's owner table and the siblings.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from aiohttp import web

from streamd.workers.ownership import PathOwners

WHEP_OFFER = "/whep/{path}"
SESSION_RESOURCES = ("/whep-session/{id}", "/whip-session/{id}")
LIVE_HLS = ("/hls/{path}/index.m3u8", "/hls/{path}/{rendition}/{name}")  # streamd/hls/routes.py


@dataclass(frozen=True)
class Target:
    """What a request names that one worker holds."""

    kind: Literal["path", "webrtc"]
    key: str


def clean_path(raw: str) -> str | None:
    """A path as the routes resolve it (no empty or ``.`` segments); None for one they refuse."""
    parts = [p for p in raw.split("/") if p not in ("", ".")]
    if not parts or ".." in parts or len(raw) > 4096 or "\0" in raw:
        return None
    return "/".join(parts)


def target_of(method: str, route: str, match: Mapping[str, str]) -> Target | None:
    """The live path or WebRTC session a request is about, if it is one that has an owner."""
    if route == WHEP_OFFER and method == "POST":
        path = clean_path(match.get("path", ""))
        return None if path is None else Target("path", path)
    if route in SESSION_RESOURCES and method in ("DELETE", "PATCH"):
        key = match.get("id", "")
        return Target("webrtc", key) if 0 < len(key) <= 256 else None
    if route in LIVE_HLS and method in ("GET", "HEAD"):
        path = clean_path(match.get("path", ""))
        return None if path is None else Target("path", path)
    return None


def route_of(request: web.Request) -> str:
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else ""


class Placement:
    """``await placement(request)``: the sibling that must answer it, or None (this worker)."""

    def __init__(
        self,
        me: int,
        paths: Any,  # streamd.paths.Paths: live, siblings, config
        owners: PathOwners,
        find: Callable[[str, str], Awaitable[int | None]],
        held_here: Callable[[str, str], bool],
        converters: Callable[[str], Awaitable[int | None]] | None = None,
    ) -> None:
        """``find(kind, key)``: the sibling holding a ``"webrtc"`` session or an ``"hls"`` stream
        (of a path); ``held_here(kind, key)``: whether this worker holds it; ``converters(path)``:
        the worker converting a file for WebRTC (:class:`.file_placement.FileConverters`)."""
        self.me = me
        self.paths = paths
        self.owners = owners
        self.find = find
        self.held_here = held_here
        self.converters = converters

    async def __call__(self, request: web.Request) -> int | None:
        target = target_of(request.method, route_of(request), request.match_info)
        if target is None:
            return None
        worker = await self.worker_for(target)
        if worker is None and route_of(request) == WHEP_OFFER:
            return await self.file_converter(target.key)
        return worker

    async def file_converter(self, path: str) -> int | None:
        """The sibling converting the file ``path`` for WebRTC viewers (None: here, or not a file
        that needs it). Asked only of an offer no live path claimed."""
        live = self.paths.live.get(path)
        if self.converters is None or (live is not None and live.online):
            return None
        return self._other(await self.converters(path))

    async def worker_for(self, target: Target) -> int | None:
        if target.kind == "webrtc":
            if self.held_here("webrtc", target.key):
                return None
            return self._other(await self.find("webrtc", target.key))
        return await self.path_owner(target)

    async def path_owner(self, target: Target) -> int | None:
        """The sibling whose publisher holds the path, else the one holding its ended HLS stream
        (None: here, nobody, or not a live path)."""
        path = target.key
        if not self.paths.config.accepts_publisher(path):
            return None  # a file, or a configured relay (each worker pulls its own)
        live = self.paths.live.get(path)
        siblings = self.paths.siblings
        if live is not None and live.online and not (siblings is not None and siblings.is_relay(live)):
            return None  # published here
        owner = await self.owners.owner(path)
        if owner is not None and owner.worker >= 0:
            return self._other(owner.worker)
        if self.held_here("hls", path):
            return None
        return self._other(await self.find("hls", path))  # offline: its ended stream, if anywhere

    def _other(self, worker: int | None) -> int | None:
        return None if worker is None or worker == self.me else worker
