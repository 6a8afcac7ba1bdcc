"""External authorization, for deployments that already have users: an HTTP hook and JWT tokens.

- **JWT**: with ``jwt_key``/``jwt_key_file`` or ``jwt_jwks_url``, a bearer token
  (``Authorization: Bearer``, or ``?jwt=`` in an HTTP or RTSP URL for players that cannot send
  headers) decides by its permissions claim (:mod:`streamd.auth.jwt_tokens`).
- **Hook**: with ``auth_hook``, every other decision is the hook's: the server POSTs
  ``{user, password, token, client, action, path, protocol}`` as JSON; a 2xx answer allows,
  anything else (or no answer within ``auth_hook_timeout``) refuses. The hook can only check a
  password it is given, so with a hook the server asks for Basic (a Digest answer holds no
  password and counts as no credentials): put TLS in front of it.
- Otherwise the local users decide (the ``inner`` Authorizer): requests without a token when
  only JWT is configured, and the ``admin_token`` (a bearer token, but no JWT).

Decisions are remembered for ``auth_cache_ttl`` seconds (:mod:`streamd.auth.decisions`).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import aiohttp

from streamd.auth.decisions import DecisionCache, decision_key
from streamd.auth.jwt_tokens import JwtVerifier, TokenError
from streamd.auth.model import ANONYMOUS, Authorizer, AuthRequest, AuthResult
from streamd.config import ConfigError, ServerConfig

log = logging.getLogger(__name__)

MAX_HOOK_ANSWER = 64 * 1024


def token_from_uri(uri: str) -> str | None:
    """The ``jwt`` query parameter of an HTTP or RTSP URL (``rtsp://host/cams/door?jwt=...``)."""
    try:
        query = urlsplit(uri).query
    except ValueError:
        return None
    values = parse_qs(query).get("jwt")
    return values[0] if values and values[0] else None


def bearer_token(authorization: str | None) -> str | None:
    scheme, _, value = (authorization or "").partition(" ")
    return value.strip() or None if scheme.lower() == "bearer" else None


def basic_credentials(authorization: str | None) -> tuple[str, str] | None:
    """(user, password) from ``Authorization: Basic``; None for anything else or garbage."""
    scheme, _, value = (authorization or "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user, colon, password = base64.b64decode(value.strip(), validate=True).decode("utf-8").partition(":")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    return (user, password) if colon else None


class ExternalAuthorizer:
    """Tokens first, then the hook, else ``inner`` (see the module docstring)."""

    def __init__(
        self,
        inner: Authorizer,
        *,
        verifier: JwtVerifier | None = None,
        hook: str | None = None,
        hook_timeout: float = 5.0,
        realm: str = "streamd",
        cache_ttl: float = 5.0,
        admin_token: str | None = None,
    ) -> None:
        self.inner = inner
        self.admin_token = admin_token  # a bearer token that is no JWT: the inner rules decide
        if hasattr(inner, "may"):  # a local user's permissions (only local users answer Digest)
            self.may = inner.may
        self.verifier = verifier
        self.hook = hook
        self.hook_timeout = hook_timeout
        self.realm = realm
        self.cache = DecisionCache(cache_ttl)
        self.hook_calls = 0

    async def authorize(self, request: AuthRequest, now: float) -> AuthResult:
        token = request.token or bearer_token(request.authorization)
        if (
            token is not None
            and self.admin_token
            and hmac.compare_digest(token.encode(), self.admin_token.encode())
        ):
            return await self.inner.authorize(request, now)
        verifier = self.verifier
        if token is not None and verifier is not None:
            return await self._cached(
                ("jwt", token), request, now, lambda: self._by_token(verifier, token, request, now)
            )
        if self.hook is not None:
            credentials = basic_credentials(request.authorization)
            key = ("hook", *(credentials or ("", None)), token)
            return await self._cached(key, request, now, lambda: self._by_hook(credentials, token, request))
        return await self.inner.authorize(request, now)

    async def _cached(
        self,
        key: tuple[str | None, ...],
        request: AuthRequest,
        now: float,
        decide: Callable[[], Awaitable[tuple[AuthResult, float | None]]],
    ) -> AuthResult:
        """The remembered decision for these inputs, or a new one (remembered for at most its
        ``ttl``: None for the cache's own, 0 for never)."""
        digest = decision_key(*key, request.client, request.action, request.path, request.protocol)
        found = self.cache.get(digest, now)
        if found is not None:
            return found
        result, ttl = await decide()
        self.cache.put(digest, result, now, ttl)
        return result

    async def _by_token(
        self, verifier: JwtVerifier, token: str, request: AuthRequest, now: float
    ) -> tuple[AuthResult, float | None]:
        try:
            grant = await verifier.verify(token, now)
        except TokenError as exc:
            challenge = f'Bearer realm="{self.realm}", error="invalid_token"'
            return AuthResult(False, status=401, challenges=(challenge,), reason=str(exc)), 0
        left = grant.expires - time.time()  # never remembered past the token's expiry
        if grant.permits(request.action, request.path):
            return AuthResult(True, grant.user or ANONYMOUS), left
        reason = f"token of {grant.user!r} has no {request.action} permission for {request.path!r}"
        return AuthResult(False, grant.user, status=403, reason=reason), left

    async def _by_hook(
        self, credentials: tuple[str, str] | None, token: str | None, request: AuthRequest
    ) -> tuple[AuthResult, float | None]:
        user, password = credentials or ("", "")
        body = {
            "user": user,
            "password": password,
            "token": token or "",
            "client": request.client,
            "action": request.action,
            "path": request.path,
            "protocol": request.protocol,
        }
        self.hook_calls += 1
        try:
            timeout = aiohttp.ClientTimeout(total=self.hook_timeout)
            async with (
                aiohttp.ClientSession(timeout=timeout) as session,
                session.post(self.hook, json=body, allow_redirects=False) as answer,  # type: ignore[arg-type]
            ):
                status = answer.status
                await answer.content.read(MAX_HOOK_ANSWER)
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.warning("auth hook %s did not answer: %s", self.hook, exc or type(exc).__name__)
            return self._refusal(credentials, token, None, "auth hook unreachable"), 0
        if 200 <= status < 300:
            return AuthResult(True, user or ANONYMOUS), None
        return self._refusal(credentials, token, status, f"auth hook answered {status}"), None

    def _refusal(
        self, credentials: tuple[str, str] | None, token: str | None, status: int | None, reason: str
    ) -> AuthResult:
        """401 with a Basic prompt when no credentials were given (or the hook says 401), else 403."""
        if (credentials is None and token is None) or status == 401:
            prompt = (f'Basic realm="{self.realm}"',)
            return AuthResult(False, status=401, challenges=prompt, reason=reason)
        user = credentials[0] if credentials else None
        return AuthResult(False, user, status=403, reason=reason)


def with_external(config: ServerConfig, inner: Authorizer) -> Authorizer:
    """``inner`` wrapped in the external authorization the config asks for (or ``inner`` itself).

    Raises ConfigError for settings that cannot work (see :func:`check_external`)."""
    verifier = check_external(config)
    if config.auth_hook is None and verifier is None:
        return inner
    return ExternalAuthorizer(
        inner,
        verifier=verifier,
        hook=config.auth_hook,
        hook_timeout=config.auth_hook_timeout,
        realm=str(getattr(config, "realm", "streamd")),
        cache_ttl=config.auth_cache_ttl,
        admin_token=config.admin_token,
    )


def check_external(config: ServerConfig) -> JwtVerifier | None:
    """ConfigError for external settings that cannot work (the CLI calls it when loading the
    config); the token verifier they ask for, if any."""
    hook = config.auth_hook
    if hook is not None and urlsplit(hook).scheme not in ("http", "https"):
        raise ConfigError(f"auth_hook must be an http:// or https:// URL, not {hook!r}")
    if not 0 < config.auth_hook_timeout <= 60:
        raise ConfigError("auth_hook_timeout must be between 0 and 60 seconds")
    if not 0 <= config.auth_cache_ttl <= 3600:
        raise ConfigError("auth_cache_ttl must be between 0 and 3600 seconds")
    return _verifier(config)


def _verifier(config: ServerConfig) -> JwtVerifier | None:
    given = [k for k in ("jwt_key", "jwt_key_file", "jwt_jwks_url") if getattr(config, k)]
    if not given:
        return None
    if len(given) > 1:
        raise ConfigError(f"give only one of jwt_key, jwt_key_file, jwt_jwks_url (not {', '.join(given)})")
    key = config.jwt_key
    if config.jwt_key_file:
        try:
            key = Path(config.jwt_key_file).expanduser().read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot read jwt_key_file {config.jwt_key_file}: {exc.strerror}") from None
    url = config.jwt_jwks_url
    if url is not None and urlsplit(url).scheme not in ("http", "https"):
        raise ConfigError(f"jwt_jwks_url must be an http:// or https:// URL, not {url!r}")
    algorithms = config.jwt_algorithms
    if isinstance(algorithms, str) or not algorithms or not all(isinstance(a, str) for a in algorithms):
        raise ConfigError('jwt_algorithms must be a list of names, e.g. ["RS256"]')
    try:
        return JwtVerifier(
            algorithms=list(algorithms),
            key=key,
            jwks_url=url,
            claim=config.jwt_claim,
            audience=config.jwt_audience,
        )
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
