"""Local users: the :class:`~streamd.auth.model.Authorizer` for the config's ``[[users]]``.

Order of the checks, for every request: a client (or user) backing off gets 503 before anything
is computed; no credentials -> what the anonymous user may (else 401 with challenges, or 403 when
no login could help); credentials -> Digest (SHA-256 or MD5, ``uri`` equal to the request's,
realm ours, nonce ours, fresh and with a growing count) or Basic if the config allows it; then the
user's permissions (403). Sans-I/O: the time comes in as ``now``.
"""

from __future__ import annotations

import hmac
from urllib.parse import urlsplit

from streamd.auth.credentials import Basic, CredentialsError, Digest, parse_authorization
from streamd.auth.digest import base_algorithm, challenges, expected_response
from streamd.auth.limits import LoginLimits, retry_after_header
from streamd.auth.model import ANONYMOUS, AuthRequest, AuthResult
from streamd.auth.nonces import NonceBook, NonceState
from streamd.auth.users import Policy, in_networks

AUTH_METHODS = ("digest", "basic")


class Authenticator:
    def __init__(
        self,
        policy: Policy,
        *,
        realm: str = "streamd",
        methods: tuple[str, ...] = ("digest",),
        nonces: NonceBook | None = None,
        limits: LoginLimits | None = None,
    ) -> None:
        self.policy = policy
        self.realm = realm
        self.methods = methods
        self.nonces = nonces or NonceBook()
        self.limits = limits or LoginLimits()

    @property
    def counters(self) -> dict[str, int]:
        """Plain numbers for /metrics."""
        return {**self.limits.counters, "auth_nonces_dropped": self.nonces.dropped}

    async def authorize(self, request: AuthRequest, now: float) -> AuthResult:
        return self.check(request, now)

    def may(self, user: str, action: str, path: str, client: str) -> bool:
        """``user``'s permission without credentials: for lists filtered after one login (a Digest
        answer counts once; using it again would be a replay)."""
        return self.policy.permits(user, action, path, client)

    def check(self, request: AuthRequest, now: float) -> AuthResult:
        client, action, path = request.client, request.action, request.path
        actions = (action, *request.alternatives)
        if request.authorization is None:
            if any(self.policy.permits(ANONYMOUS, a, path, client) for a in actions):
                return AuthResult(True, ANONYMOUS)
            if not self.policy.configured or not any(
                self.policy.anyone_may(a, path, client) for a in actions
            ):
                return AuthResult(False, status=403, reason=f"nobody may {action} {path!r} from {client}")
            return self._challenge(request, now, "no credentials")
        credentials: Basic | Digest | None = None
        try:
            credentials = parse_authorization(request.authorization)
        except CredentialsError as exc:
            malformed = str(exc)
        user_name = (
            credentials.username
            if isinstance(credentials, Basic)
            else credentials.get("username")
            if credentials is not None
            else None
        )
        wait = self.limits.retry_after(client, user_name, now)
        if wait:
            return AuthResult(
                False,
                status=503,
                headers={"Retry-After": retry_after_header(wait)},
                reason="too many failed logins; backing off",
            )
        if credentials is None:
            return self._refuse(request, None, now, malformed)
        if isinstance(credentials, Basic):
            failure = self._basic(credentials)
        else:
            failure = self._digest(credentials, request, now)
        if failure is not None:
            stale = failure == "stale nonce"
            count = failure not in ("stale nonce", "foreign nonce")
            return self._refuse(request, user_name, now, failure, stale=stale, count=count)
        assert user_name is not None
        user = self.policy.user(user_name)
        assert user is not None
        permitted = any(self.policy.permits(user_name, a, path, client) for a in actions)
        if user.networks and not in_networks(client, user.networks):
            # a right password from outside the user's networks is still a failed login
            return self._refuse(request, user_name, now, f"user {user_name!r} may not log in from {client}")
        self.limits.succeeded(client, user_name)
        if not permitted:
            return AuthResult(False, user_name, 403, reason=f"user {user_name!r} may not {action} {path!r}")
        how = "Basic" if isinstance(credentials, Basic) else f"Digest {credentials.get('algorithm') or 'MD5'}"
        return AuthResult(True, user_name, reason=how)

    # --- checks ---------------------------------------------------------------------------------

    def _basic(self, credentials: Basic) -> str | None:
        if "basic" not in self.methods:
            return "Basic is not allowed (auth_methods)"
        user = self.policy.user(credentials.username)
        if user is None or user.secret is None:
            return f"unknown user {credentials.username[:40]!r}"
        if not user.secret.check_password(credentials.password):
            return f"wrong password for {credentials.username!r}"
        return None

    def _digest(self, d: Digest, request: AuthRequest, now: float) -> str | None:
        if "digest" not in self.methods:
            return "Digest is not allowed (auth_methods)"
        missing = [n for n in ("username", "realm", "nonce", "uri", "response") if d.get(n) is None]
        if missing:
            return f"Digest without {', '.join(missing)}"
        algorithm = base_algorithm(d.get("algorithm"))
        if algorithm is None:
            return f"unsupported Digest algorithm {d.get('algorithm', '')[:20]!r}"
        if d["realm"] != self.realm:
            return f"wrong realm {d['realm'][:40]!r}"
        if not _same_uri(d["uri"], request.uri):
            return f"Digest uri {d['uri'][:80]!r} is not the request's"
        qop, nc_text, cnonce = d.get("qop"), d.get("nc"), d.get("cnonce")
        nc: int | None = None
        if qop is not None:
            if qop.lower() != "auth" or nc_text is None or cnonce is None:
                return "Digest qop must be auth, with nc and cnonce"
            if len(nc_text) != 8:
                return "Digest nc must be 8 hex digits"
            try:
                nc = int(nc_text, 16)
            except ValueError:
                return "Digest nc must be 8 hex digits"
        elif (d.get("algorithm") or "").upper().endswith("-SESS"):
            return "Digest -sess needs qop and cnonce"
        user = self.policy.user(d["username"])
        if user is None or user.secret is None:
            return f"unknown user {d['username'][:40]!r}"
        expected = expected_response(
            d.get("algorithm") or "MD5",
            user.secret.ha1(algorithm),
            nonce=d["nonce"],
            method=request.method,
            uri=d["uri"],
            qop=qop,
            nc=nc_text,
            cnonce=cnonce,
        )
        # the nonce is checked before the response so a foreign nonce never costs a failure count
        state = self.nonces.check(d["nonce"], request.client, now, None)
        if state is NonceState.FOREIGN:
            return "foreign nonce"  # another server's or before a restart: a fresh challenge
        if state is NonceState.STALE:
            return "stale nonce"
        if not hmac.compare_digest(expected, d["response"].lower()):
            return f"wrong password for {d['username'][:40]!r}"
        if nc is not None and self.nonces.check(d["nonce"], request.client, now, nc) is NonceState.REPLAYED:
            return "replayed nonce count"
        return None

    # --- answers --------------------------------------------------------------------------------

    def _challenge(self, request: AuthRequest, now: float, reason: str, *, stale: bool = False) -> AuthResult:
        nonce = self.nonces.issue(request.client, now)
        return AuthResult(
            False,
            status=401,
            challenges=tuple(challenges(self.realm, nonce, stale=stale, basic="basic" in self.methods)),
            reason=reason,
        )

    def _refuse(
        self,
        request: AuthRequest,
        user: str | None,
        now: float,
        reason: str,
        *,
        stale: bool = False,
        count: bool = True,
    ) -> AuthResult:
        if count:
            self.limits.failed(request.client, user, now)
        return self._challenge(request, now, reason, stale=stale)


def _same_uri(digest_uri: str, request_uri: str) -> bool:
    """RFC 7616 3.4.6: the ``uri`` names the request's resource (absolute or just the path)."""
    if digest_uri == request_uri:
        return True
    try:
        a, b = urlsplit(digest_uri), urlsplit(request_uri)
    except ValueError:
        return False
    if a.scheme and (a.scheme, a.netloc.rpartition("@")[2].lower()) != (b.scheme, b.netloc.lower()):
        return False
    return (a.path.rstrip("/"), a.query) == (b.path.rstrip("/"), b.query)
