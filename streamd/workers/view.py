"""The whole server as the HTTP side of one worker shows it: every worker's sessions and paths.

The HTTP handlers ask the backend synchronously (``snapshot()``, ``live_paths()``, ...), so a
middleware first gathers the siblings' state over the control channel (one round trip per API
request, page or scrape) and :class:`WholeServer` answers from it plus this worker's own state.
Admin actions (drain, move) go to every worker: here at once, to the siblings through the parent
(which replays them to a worker it restarts), and the response waits until they applied them.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from aiohttp import web

from streamd.session_report import snapshot
from streamd.srtp.context import SRTP_STATS, SrtpStats
from streamd.workers.internal import SIBLING
from streamd.workers.multicast_view import WholeMulticast, multicast_state

Gather = Callable[[], Awaitable[list[dict[str, Any]]]]
Broadcast = Callable[[dict[str, Any]], None]
REFRESHED = ("/", "/metrics", "/api/", "/watch/", "/login", "/sdp/")


def local_state(rtsp: Any, index: int, tunnels: Callable[[], int]) -> dict[str, Any]:
    """What this worker tells a sibling that shows the whole server (sibling relays left out)."""
    sessions = [s for s in rtsp.sessions.values() if s.client_host != SIBLING]
    now = time.monotonic()
    return {
        "worker": index,
        "private": [{**row, "worker": index} for row in snapshot(sessions, now, private=True)],
        "public": [{**row, "worker": index} for row in snapshot(sessions, now, private=False)],
        "live": {path: own_viewers(rtsp, path) for path in rtsp.live_paths() if path not in relayed(rtsp)},
        "recording": [path for path in rtsp.live_paths() if rtsp.recordings.is_recording(path)],
        "auth": rtsp.auth_metrics(),
        "tunnels": tunnels(),
        "srtp": dataclasses.asdict(SRTP_STATS),
        "multicast": multicast_state(rtsp.multicast),
    }


def relayed(rtsp: Any) -> set[str]:
    """Live paths here that are relayed from a sibling (their publisher is elsewhere)."""
    siblings = rtsp.paths.siblings
    return set() if siblings is None else {p for p, (_, r) in siblings.relays.items() if r.live is not None}


def own_viewers(rtsp: Any, path: str) -> int:
    """Viewers of ``path`` here, without the siblings' relays reading it."""
    internal = sum(1 for s in rtsp.sessions.values() if s.client_host == SIBLING and s.rtsp.path == path)
    return rtsp.viewers(path) - internal


class WholeServer:
    """Delegates to the worker's RtspServer; what shows the server is summed over every worker."""

    def __init__(self, rtsp: Any, index: int, gather: Gather, broadcast: Broadcast) -> None:
        object.__setattr__(self, "_rtsp", rtsp)
        object.__setattr__(self, "_index", index)
        object.__setattr__(self, "_gather", gather)
        object.__setattr__(self, "_siblings", [])
        object.__setattr__(self, "relocator", EveryWorker(rtsp.relocator, broadcast, self))
        object.__setattr__(self, "tunnels", lambda: 0)  # set once the HTTP side exists
        object.__setattr__(self, "recordings", WholeRecordings(rtsp.recordings, self))
        object.__setattr__(self, "multicast", WholeMulticast(rtsp.multicast, self))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._rtsp, name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._rtsp, name, value)  # e.g. http_hand_over

    async def refresh(self) -> None:
        object.__setattr__(self, "_siblings", await self._gather())

    def _mine(self) -> dict[str, Any]:
        return local_state(self._rtsp, self._index, self.tunnels)

    def snapshot(
        self, *, private: bool = True, offset: int = 0, limit: int | None = None
    ) -> list[dict[str, object]]:
        key = "private" if private else "public"
        rows = [row for state in [self._mine(), *self._siblings] for row in state[key]]
        return rows[offset : None if limit is None else offset + limit]

    def session_count(self) -> int:
        return sum(len(state["public"]) for state in [self._mine(), *self._siblings])

    def live_paths(self) -> list[str]:
        """Paths published now, each counted where its publisher is (a relay here may lag behind it)."""
        names = set(self._rtsp.live_paths()) - relayed(self._rtsp)
        for state in self._siblings:
            names.update(state["live"])
        return sorted(names)

    def viewers(self, path: str) -> int:
        return own_viewers(self._rtsp, path) + sum(state["live"].get(path, 0) for state in self._siblings)

    def auth_metrics(self) -> dict[str, int]:
        total: Counter[str] = Counter(self._rtsp.auth_metrics())
        for state in self._siblings:
            total.update(state["auth"])
        return dict(total)

    def srtp_stats(self) -> SrtpStats:
        total: Counter[str] = Counter(dataclasses.asdict(SRTP_STATS))
        for state in self._siblings:
            total.update(state.get("srtp", {}))
        return SrtpStats(**total)

    def tunnel_count(self) -> int:
        return self.tunnels() + sum(int(state["tunnels"]) for state in self._siblings)


class WholeRecordings:
    """The worker's recordings; a path is being recorded when the worker publishing it records it."""

    def __init__(self, local: Any, whole: WholeServer) -> None:
        self._local = local
        self._whole = whole

    def __getattr__(self, name: str) -> Any:
        return getattr(self._local, name)

    def is_recording(self, path: str) -> bool:
        siblings = self._whole._siblings
        return self._local.is_recording(path) or any(path in s.get("recording", ()) for s in siblings)


def hls_state(hls: Any) -> dict[str, Any]:
    """This worker's live HLS counters (a :class:`streamd.hls.live_service.LiveHls`)."""
    return {"requests": dict(hls.requests), "blocked": int(hls.blocked)}


class WholeHls:
    """Live HLS counters over every worker, as ``RequestCollector`` reads them from a LiveHls: a
    request forwarded to the path's owner is counted there only, so the sum counts each once."""

    def __init__(self, local: Any, whole: WholeServer) -> None:
        self._local = local
        self._whole = whole

    def _states(self) -> list[dict[str, Any]]:
        return [state["hls"] for state in self._whole._siblings if "hls" in state]

    @property
    def requests(self) -> Counter[str]:
        total: Counter[str] = Counter(self._local.requests)
        for state in self._states():
            total.update(state["requests"])
        return total

    @property
    def blocked(self) -> int:
        return int(self._local.blocked) + sum(int(state["blocked"]) for state in self._states())


class WholeChunks:
    """WebRTC file-chunk counters over every worker, as ``ChunkCollector`` reads them (each chunk
    counted by the worker that converted it)."""

    def __init__(self, local: Any, whole: WholeServer) -> None:
        self._local = local  # this worker's FileChunks
        self._whole = whole

    def counts(self) -> dict[str, int]:
        total: Counter[str] = Counter(self._local.counts())
        for state in self._whole._siblings:
            total.update(state.get("chunks", {}))
        return dict(total)


class EveryWorker:
    """The relocator's admin actions, applied here and sent to every sibling."""

    def __init__(self, local: Any, broadcast: Broadcast, whole: WholeServer) -> None:
        self._local = local
        self._broadcast = broadcast
        self._whole = whole

    def __getattr__(self, name: str) -> Any:
        return getattr(self._local, name)

    def drain(self, targets: Sequence[str], grace: float = 30.0) -> int:
        told = self._local.drain(targets, grace)
        self._broadcast({"kind": "drain", "to": list(targets), "grace": grace})
        return told

    def stop_draining(self) -> None:
        self._local.stop_draining()
        self._broadcast({"kind": "stop_draining"})

    def move_path(self, path: str, targets: Sequence[str]) -> int:
        told = self._local.move_path(path, targets)
        self._broadcast({"kind": "move", "path": path, "to": list(targets)})
        return told

    def status(self) -> dict[str, object]:
        return {**self._local.status(), "sessions": self._whole.session_count()}


def apply(relocator: Any, action: dict[str, Any]) -> int:
    """An admin action a sibling broadcast, on this worker's relocator; how many clients were told."""
    kind = action.get("kind")
    if kind == "drain":
        return int(relocator.drain(action.get("to", []), float(action.get("grace", 30.0))))
    if kind == "stop_draining":
        relocator.stop_draining()
    elif kind == "move":
        return int(relocator.move_path(str(action["path"]), action.get("to", [])))
    return 0


def middleware(whole: WholeServer, settle: Callable[[], Awaitable[int]]) -> Any:
    """Refresh the siblings' state before pages, API calls and scrapes; after an admin action,
    wait until the siblings applied it and count the clients they told."""

    @web.middleware
    async def whole_server(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if request.path == "/" or request.path.startswith(REFRESHED[1:]):
            await whole.refresh()
        response = await handler(request)
        told = await settle()
        if told and isinstance(response, web.Response) and response.content_type == "application/json":
            data = json.loads(response.text or "{}")
            if isinstance(data.get("redirected"), int):
                data["redirected"] += told
                response.text = json.dumps(data, indent=1) + "\n"
        return response

    return whole_server


__all__ = ["WholeChunks", "WholeHls", "WholeServer", "apply", "hls_state", "local_state", "middleware"]
