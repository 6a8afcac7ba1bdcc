"""Sending clients elsewhere: 302 answers round-robin over a path's targets, and REDIRECT requests.

A path configured with ``redirect = [...]`` is served by other servers (load balancing): its
DESCRIBE and SETUP are answered ``302 Moved Temporarily`` with a ``Location`` taken in turn from
the list. OPTIONS is answered here as usual: GStreamer 1.22 follows a 302 to OPTIONS by sending its
DESCRIBE for the new URL to the old server. A client already playing is moved with a
server-to-client ``REDIRECT`` (RFC 2326 section 10.10), which it answers and then follows with
TEARDOWN here and SETUP there.
No I/O here: the server writes what these functions build.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

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
