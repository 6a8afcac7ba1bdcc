"""The client side of RTSP, sans-I/O: build requests, match responses, keep Session and credentials.

The relay (:mod:`streamd.live.relay`) pulls streams from cameras and other servers with it; the
I/O shell only moves bytes. Requests get consecutive ``CSeq`` numbers and the current ``Session``;
responses are matched to their request by ``CSeq`` (servers answer in order, but some also send
requests of their own, e.g. ``OPTIONS`` or ``REDIRECT``, which come out as :class:`ServerRequest`).

Authentication: credentials come from the URL's userinfo (``rtsp://user:pass@camera/stream``) and
are never put in a request URI. After a 401 the caller asks :meth:`ClientProtocol.authenticate`;
Digest (RFC 7616: SHA-256 and MD5, their ``-sess`` forms, with or without ``qop=auth``) is
preferred over Basic, which is only sent when the server offers nothing else; of several Digest
challenges the first with an algorithm we know is taken (servers list their preferred first).
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit, urlunsplit

from streamd.rtsp.errors import RtspError
from streamd.rtsp.headers.session import parse_session
from streamd.rtsp.message import InterleavedFrame, Request, Response
from streamd.rtsp.parser import MessageParser, ParseError

__all__ = [
    "Answered",
    "Challenge",
    "ClientProtocol",
    "ServerRequest",
    "control_url",
    "parse_challenges",
    "split_credentials",
]

DEFAULT_SESSION_TIMEOUT = 60
_PARAM = re.compile(r'\s*([A-Za-z0-9_.-]+)\s*=\s*("(?:[^"\\]|\\.)*"?|[^,\s]*)\s*,?')
_SCHEME = re.compile(r"\s*([A-Za-z][A-Za-z0-9_-]*)(?:\s+|$)")


@dataclass(frozen=True)
class Answered:
    """A response and the request it answers."""

    request: Request
    response: Response


@dataclass(frozen=True)
class ServerRequest:
    """A request the server sent us (RFC 2326 allows OPTIONS, ANNOUNCE, REDIRECT, GET/SET_PARAMETER)."""

    request: Request


@dataclass(frozen=True)
class Challenge:
    """One ``WWW-Authenticate`` challenge: its scheme (lower case) and parameters (names lower case)."""

    scheme: str
    params: dict[str, str] = field(default_factory=dict)


def parse_challenges(values: list[str]) -> list[Challenge]:
    """Challenges of ``WWW-Authenticate`` headers; unreadable parts are skipped, never raised on.

    A header may hold several challenges (``Digest realm="a", nonce="b", Basic realm="a"``): a new
    one starts wherever a bare token follows a comma.
    """
    challenges: list[Challenge] = []
    for value in values:
        rest = value
        while rest.strip():
            match = _SCHEME.match(rest)
            if match is None:
                break
            scheme, rest = match.group(1).lower(), rest[match.end() :]
            params: dict[str, str] = {}
            while (param := _PARAM.match(rest)) is not None and param.end() > 0:
                raw = param.group(2)
                if raw.startswith('"'):
                    inner = raw[1:-1] if raw.endswith('"') and len(raw) > 1 else raw[1:]
                    raw = re.sub(r"\\(.)", r"\1", inner)
                params[param.group(1).lower()] = raw
                rest = rest[param.end() :]
            challenges.append(Challenge(scheme, params))
            rest = rest.lstrip(" \t,")
    return challenges


def split_credentials(url: str) -> tuple[str, str | None, str | None]:
    """``rtsp://u:p@host/x`` -> (``rtsp://host/x``, ``u``, ``p``); userinfo is percent-decoded."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url, None, None
    userinfo, _, hostport = parts.netloc.rpartition("@")
    user, _, password = userinfo.partition(":")
    clean = urlunsplit((parts.scheme, hostport, parts.path, parts.query, parts.fragment))
    return clean, unquote(user), unquote(password)


def control_url(base: str, control: str | None) -> str:
    """The URL a track's ``a=control`` names (RFC 2326 C.1.1), the way players resolve it.

    Absolute controls are used as they are, ``*`` or none means the base itself, and a relative one
    is appended to the base with one ``/`` between (many cameras send a Content-Base without the
    trailing slash and still mean "below it", so plain RFC 3986 resolution would be wrong).
    """
    if control is None or control in ("", "*"):
        return base
    if "://" in control:
        return control
    return base.rstrip("/") + "/" + control.lstrip("/")


_DIGEST_ALGORITHMS = {"MD5": hashlib.md5, "MD5-SESS": hashlib.md5, "SHA-256": hashlib.sha256}
_DIGEST_ALGORITHMS["SHA-256-SESS"] = hashlib.sha256


def _known_algorithm(challenge: Challenge) -> bool:
    return challenge.params.get("algorithm", "MD5").upper() in _DIGEST_ALGORITHMS


def _hash(algorithm: str, text: str) -> str:
    return _DIGEST_ALGORITHMS[algorithm.upper()](text.encode("utf-8")).hexdigest()


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


class ClientProtocol:
    """One RTSP client connection's state: CSeq, Session, credentials, requests awaiting answers."""

    def __init__(
        self,
        url: str,
        *,
        user_agent: str = "streamd",
        random_bytes: Callable[[int], bytes] = os.urandom,
    ) -> None:
        self.url, self.username, self.password = split_credentials(url)
        self.user_agent = user_agent
        self.session: str | None = None
        self.session_timeout = DEFAULT_SESSION_TIMEOUT
        self.public: set[str] = set()  # methods the server lists in OPTIONS' Public
        self._cseq = 0
        self._pending: dict[int, Request] = {}
        self._parser = MessageParser()
        self._random = random_bytes
        self._challenge: Challenge | None = None
        self._nonce_count = 0

    # --- outgoing -------------------------------------------------------------------------

    def request(
        self, method: str, uri: str | None = None, headers: dict[str, str] | None = None, body: bytes = b""
    ) -> Request:
        """The next request, with CSeq, Session, User-Agent and Authorization filled in."""
        self._cseq += 1
        request = Request(method, uri or self.url, body=body)
        request.headers["CSeq"] = str(self._cseq)
        request.headers["User-Agent"] = self.user_agent
        if self.session is not None:
            request.headers["Session"] = self.session
        for name, value in (headers or {}).items():
            request.headers[name] = value
        authorization = self._authorization(method, request.uri)
        if authorization is not None:
            request.headers["Authorization"] = authorization
        self._pending[self._cseq] = request
        return request

    def reply_to(self, event: ServerRequest) -> Response:
        """Our answer to a server's request: 200 for keep-alive style requests, 501 for the rest."""
        status = 200 if event.request.method in ("OPTIONS", "GET_PARAMETER", "SET_PARAMETER") else 501
        response = Response(status)
        if (cseq := event.request.headers.get("CSeq")) is not None:
            response.headers["CSeq"] = cseq
        if status == 200:
            response.headers["Public"] = "OPTIONS, GET_PARAMETER, SET_PARAMETER"
        return response

    # --- incoming -------------------------------------------------------------------------

    def feed(self, data: bytes) -> list[Answered | ServerRequest | InterleavedFrame]:
        """Events from the bytes the server sent. A malformed response raises ``RtspError(502)``."""
        events: list[Answered | ServerRequest | InterleavedFrame] = []
        for event in self._parser.feed(data):
            if isinstance(event, InterleavedFrame):
                events.append(event)
            elif isinstance(event, Request):
                events.append(ServerRequest(event))
            elif isinstance(event, ParseError):
                raise RtspError(502, f"unreadable message from the server: {event.reason}")
            else:
                request = self._pending.pop(event.cseq, None) if event.cseq is not None else None
                if request is None:
                    continue  # an answer to nothing we asked (or a duplicate): ignore it
                self._note(request, event)
                events.append(Answered(request, event))
        return events

    def _note(self, request: Request, response: Response) -> None:
        if not 200 <= response.status < 300:
            return
        if "Session" in response.headers:
            session, timeout = parse_session(response.headers["Session"])
            self.session = session
            if timeout:
                self.session_timeout = timeout
        if request.method == "OPTIONS" and "Public" in response.headers:
            self.public = {m.strip().upper() for m in response.headers["Public"].split(",") if m.strip()}

    # --- authentication -------------------------------------------------------------------

    def authenticate(self, response: Response) -> bool:
        """After a 401: True when a retry with credentials is worth it (once per new challenge)."""
        if response.status != 401 or self.username is None:
            return False
        challenges = parse_challenges(response.headers.getall("WWW-Authenticate", []))
        digest = [
            c for c in challenges if c.scheme == "digest" and "nonce" in c.params and _known_algorithm(c)
        ]
        usable = digest or [c for c in challenges if c.scheme == "basic"]
        if not usable:
            return False
        challenge = usable[0]
        stale = challenge.params.get("stale", "").lower() == "true"
        if challenge == self._challenge and not stale:
            return False  # the same challenge again: the credentials are wrong
        self._challenge = challenge
        self._nonce_count = 0
        return True

    def _authorization(self, method: str, uri: str) -> str | None:
        challenge = self._challenge
        if challenge is None or self.username is None:
            return None
        password = self.password or ""
        if challenge.scheme == "basic":
            token = base64.b64encode(f"{self.username}:{password}".encode()).decode("ascii")
            return f"Basic {token}"
        p = challenge.params
        realm, nonce = p.get("realm", ""), p["nonce"]
        algorithm = p.get("algorithm", "MD5")
        ha1 = _hash(algorithm, f"{self.username}:{realm}:{password}")
        qops = [q.strip().lower() for q in p.get("qop", "").split(",")]
        cnonce = self._random(8).hex()
        if algorithm.lower().endswith("-sess"):
            ha1 = _hash(algorithm, f"{ha1}:{nonce}:{cnonce}")
        ha2 = _hash(algorithm, f"{method}:{uri}")
        fields = [
            f"username={_quote(self.username)}",
            f"realm={_quote(realm)}",
            f"nonce={_quote(nonce)}",
            f"uri={_quote(uri)}",
        ]
        if "auth" in qops:
            self._nonce_count += 1
            nc = f"{self._nonce_count:08x}"
            digest = _hash(algorithm, f"{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}")
            fields += [f"response={_quote(digest)}", "qop=auth", f"nc={nc}", f"cnonce={_quote(cnonce)}"]
        else:
            fields.append(f"response={_quote(_hash(algorithm, f'{ha1}:{nonce}:{ha2}'))}")
        if "algorithm" in p:
            fields.append(f"algorithm={algorithm}")
        if "opaque" in p:
            fields.append(f"opaque={_quote(p['opaque'])}")
        return "Digest " + ", ".join(fields)
