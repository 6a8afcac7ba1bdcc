"""One request in, one response out: version and CSeq checks, the method's handler, redirects, and
the only place an :class:`RtspError` becomes a response and a log line."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

from streamd.handlers.common import Handler, Reply
from streamd.rtsp.errors import RtspError
from streamd.rtsp.message import Request, Response
from streamd.rtsp.transitions import PUBLIC_METHODS
from streamd.server_session import Client

log = logging.getLogger("streamd")


class Dispatcher:
    def __init__(
        self,
        server_header: str,
        handlers: Mapping[str, Handler],
        moved: Callable[[Request], Response | None],
    ) -> None:
        self.server_header = server_header
        self._handlers = handlers
        self._moved = moved  # 302 for paths served elsewhere (and 503 while draining)

    async def handle(self, client: Client, request: Request) -> Reply:
        cseq = request.cseq  # only a valid number is echoed, never the raw text
        try:
            if request.cseq is None:
                raise RtspError(400, "missing or invalid CSeq header")
            if request.version != "RTSP/1.0":
                raise RtspError(505, f"version {request.version!r} not supported (RTSP/1.0 only)")
            handler = self._handlers.get(request.method)
            if request.method not in PUBLIC_METHODS or handler is None:
                raise RtspError(501, f"method {request.method!r} not implemented")
            redirect = self._moved(request)
            response, after = (redirect, None) if redirect else await handler(client, request)
        except RtspError as exc:
            log.warning(
                "%s: %s %s -> %d %s",
                client.label,
                request.method,
                _short(request.uri),
                exc.status,
                exc.reason,
            )
            response, after = Response(exc.status), None
            if exc.status in (405, 501):
                response.headers["Public"] = ", ".join(PUBLIC_METHODS)
            if exc.body:
                response.body = exc.body.encode()
                response.headers["Content-Type"] = "text/plain; charset=utf-8"
        except Exception:
            log.exception("%s: %s %s failed", client.label, request.method, _short(request.uri))
            response, after = Response(500), None
        if cseq is not None:
            response.headers["CSeq"] = str(cseq)
        response.headers["Server"] = self.server_header
        return response, after


def _short(uri: str) -> str:
    return uri if len(uri) <= 120 else uri[:117] + "..."
