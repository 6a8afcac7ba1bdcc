"""One request in, one response out: version and CSeq checks, authorization, the method's handler,
redirects, and the only place an :class:`RtspError` becomes a response and a log line.

Every request is authorized here, not just DESCRIBE (issue 14): ``publish`` for ANNOUNCE, RECORD
and any request naming a publisher's session, ``read`` for the rest, on the path of the session
the request names (else of its URI). Only ``OPTIONS *`` without a session names nothing and passes.
The user it was authorized for is set in :data:`streamd.auth.context.current_user` while the
handler runs, so sessions are bound to it."""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable, Mapping
from weakref import WeakKeyDictionary

from streamd.auth.context import current_user
from streamd.auth.external import token_from_uri
from streamd.auth.model import Action, Authorizer, AuthRequest, AuthResult
from streamd.handlers.common import Clock, Handler, Reply
from streamd.rtsp.errors import RtspError
from streamd.rtsp.headers import parse_session
from streamd.rtsp.message import Request, Response
from streamd.rtsp.transitions import PUBLIC_METHODS
from streamd.rtsp.url import request_path, split_control
from streamd.server_session import Client, PublisherSession, ServerSession

log = logging.getLogger("streamd")


class Dispatcher:
    def __init__(
        self,
        server_header: str,
        handlers: Mapping[str, Handler],
        moved: Callable[[Request], Response | Awaitable[Response | None] | None],
        authorizer: Authorizer,
        session: Callable[[str], ServerSession | None],
        clock: Clock,
        authorized: Callable[[Client], None] = lambda client: None,
    ) -> None:
        """``session(id)`` finds a session (to tell publishers' requests and bind users);
        ``authorized(client)`` is told of every allowed request (the auth deadline)."""
        self.server_header = server_header
        self._handlers = handlers
        self._moved = moved  # 302 for paths served elsewhere (and 503 while draining)
        self._authorizer = authorizer
        self._session = session
        self._clock = clock
        self._authorized = authorized
        self._tokens: WeakKeyDictionary[Client, str] = WeakKeyDictionary()  # ?jwt= per connection

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
            refusal, user = await self._authorize(client, request)
            if refusal is not None:
                return self._finish(refusal, cseq), None
            token = current_user.set(user)
            try:
                redirect = self._moved(request)
                if inspect.isawaitable(redirect):  # a cluster asks its store (streamd.cluster)
                    redirect = await redirect
                response, after = (redirect, None) if redirect else await handler(client, request)
            finally:
                current_user.reset(token)
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
        return self._finish(response, cseq), after

    def _finish(self, response: Response, cseq: int | None) -> Response:
        if cseq is not None:
            response.headers["CSeq"] = str(cseq)
        response.headers["Server"] = self.server_header
        return response

    async def _authorize(self, client: Client, request: Request) -> tuple[Response | None, str | None]:
        """(None, user) when allowed, else (the refusal, None); logged with the reason."""
        action, path, named = self._target(request)
        if request.method == "OPTIONS" and not path and not named:
            self._authorized(client)
            return None, None  # "OPTIONS *": names no resource
        authorization = request.headers.get("Authorization")
        token = token_from_uri(request.uri)  # rtsp://host/path?jwt=... for players without headers
        if token is not None:
            self._tokens[client] = token  # our Content-Base drops the query: SETUP/PLAY reuse it
        elif authorization is None:
            token = self._tokens.get(client)
        result: AuthResult = await self._authorizer.authorize(
            AuthRequest(
                protocol="rtsp",
                method=request.method,
                uri=request.uri,
                client=client.peer[0],
                action=action,
                path=path,
                authorization=authorization,
                token=token,
                alternatives=("publish",) if request.method == "OPTIONS" and action == "read" else (),
                secure=client.secure,
            ),
            self._clock(),
        )
        if result.allowed:
            self._authorized(client)
            if result.reason:
                log.debug(
                    "%s: %s %s as %s (%s)",
                    client.label,
                    request.method,
                    _short(request.uri),
                    result.user,
                    result.reason,
                )
            return None, result.user
        (log.info if request.headers.get("Authorization") is None else log.warning)(
            "%s: %s %s -> %d %s (%s %r)",
            client.label,
            request.method,
            _short(request.uri),
            result.status,
            result.reason,
            action,
            path,
        )
        response = Response(result.status)
        for challenge in result.challenges:
            response.headers.add("WWW-Authenticate", challenge)
        response.headers.update(result.headers)
        return response, None

    def _target(self, request: Request) -> tuple[Action, str, bool]:
        """The action and path a request is about, and whether it names a session."""
        header = request.headers.get("Session")
        session = self._session(parse_session(header)[0]) if header is not None else None
        publishes = request.method in ("ANNOUNCE", "RECORD") or isinstance(session, PublisherSession)
        path = session.path if session is not None else split_control(request_path(request.uri))[0]
        return ("publish" if publishes else "read"), path, header is not None


def _short(uri: str) -> str:
    return uri if len(uri) <= 120 else uri[:117] + "..."
