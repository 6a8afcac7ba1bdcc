"""Sending clients elsewhere: 302 answers round-robin over a path's targets, and REDIRECT requests.

A path configured with ``redirect = [...]`` is served by other servers (load balancing): its
DESCRIBE and SETUP are answered ``302 Moved Temporarily`` with a ``Location`` taken in turn from
the list. OPTIONS is answered here as usual: GStreamer 1.22 follows a 302 to OPTIONS by sending its
DESCRIBE for the new URL to the old server. A client already playing is moved with a
server-to-client ``REDIRECT`` (RFC 2326 section 10.10), which it answers and then follows with
TEARDOWN here and SETUP there. Paths can also be moved, and the whole server drained, at run
time (``Relocations``; the HTTP API's admin endpoints and ``streamd drain`` / ``streamd move``).
No I/O here: the server writes what these functions build.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from urllib.parse import quote, urlsplit

from streamd.rtsp.message import Request, Response


class RoundRobin:
    """Which target is next, per path (a new list for a path starts over)."""

    def __init__(self) -> None:
        self._turns: dict[str, tuple[tuple[str, ...], Iterator[str]]] = {}

    def next(self, path: str, targets: tuple[str, ...]) -> str:
        turn = self._turns.get(path)
        if turn is None or turn[0] != targets:
            turn = (targets, itertools.cycle(targets))
            self._turns[path] = turn
        return next(turn[1])


def moved_response(location: str, control: str | None = None) -> Response:
    """``302`` to ``location``; a track request keeps its track (``.../trackID=1``) on the new server."""
    if control is not None:
        location = location.rstrip("/") + "/" + control
    response = Response(302)
    response.headers["Location"] = location
    return response


def redirect_request(
    uri: str, location: str, session_id: str, cseq: int, *, range_: str | None = None
) -> Request:
    """A REDIRECT for one session: the client should go to ``location`` (at ``range_``, or now)."""
    request = Request("REDIRECT", uri)
    request.headers["CSeq"] = str(cseq)
    request.headers["Session"] = session_id
    request.headers["Location"] = location
    if range_ is not None:
        request.headers["Range"] = range_
    return request


@dataclass
class Relocations:
    """Where paths have been moved at run time, and whether the server is draining.

    Targets come, in this order, from a move made at run time (``move``), the path's configured
    ``redirect`` list, and a drain (every other path goes to ``<drain target>/<path>``). A drain
    with no targets means "go away": new sessions are refused with 503 rather than sent anywhere.
    """

    moved: dict[str, tuple[str, ...]] = field(default_factory=dict)
    drain_to: tuple[str, ...] | None = None  # None: not draining

    @property
    def draining(self) -> bool:
        return self.drain_to is not None

    def move(self, path: str, targets: Sequence[str]) -> None:
        """Send ``path`` elsewhere from now on; no targets undoes an earlier move."""
        checked = check_targets(targets)
        if checked:
            self.moved[path] = checked
        else:
            self.moved.pop(path, None)

    def drain(self, targets: Sequence[str]) -> None:
        self.drain_to = check_targets(targets)

    def targets(self, path: str, configured: tuple[str, ...]) -> tuple[str, ...]:
        """Where a request for ``path`` goes; empty: stay here (or, draining, nowhere)."""
        if path in self.moved:
            return self.moved[path]
        if configured:
            return configured
        if self.drain_to:
            return tuple(f"{base.rstrip('/')}/{quote(path)}" for base in self.drain_to)
        return ()


def check_targets(targets: Sequence[str]) -> tuple[str, ...]:
    """Targets must be ``rtsp://`` (or ``rtsps://``) URLs with a host; anything else is a ValueError."""
    if isinstance(targets, str):
        raise ValueError("targets must be a list of rtsp:// URLs, not one string")
    checked = []
    for target in targets:
        parts = urlsplit(target) if isinstance(target, str) else None
        if parts is None or parts.scheme not in ("rtsp", "rtsps") or not parts.hostname:
            raise ValueError(f"not an rtsp:// URL: {target!r}")
        if any(ch in target for ch in "\r\n\0 "):
            raise ValueError(f"a target URL cannot contain spaces or control characters: {target!r}")
        checked.append(target)
    return tuple(checked)
