"""JWT bearer tokens: verified with PyJWT against a configured key or the keys of a JWKS URL.

A token says who (``sub``) and what it may do in one claim (``streamd_permissions`` unless
configured otherwise), in the shape of the ``[[users]]`` permissions::

    {"sub": "alice", "exp": 1767225600,
     "streamd_permissions": [{"action": "read", "path": "cams/*"}, {"action": "metrics"}]}

``path`` uses the glob rules of ``[paths.*]``; without it the permission holds for every path.
Tokens must carry ``exp``. JWKS keys are fetched with aiohttp (PyJWT's own client blocks), kept
for ``JWKS_TTL`` and fetched again early, at most every ``JWKS_REFETCH`` seconds, when a token
names a key id not yet seen (keys being rotated). PyJWT is imported where tokens are verified,
not at the top: with cryptography's key types it is a tenth of every server's start-up, and most
servers verify no tokens.
"""

from __future__ import annotations

import asyncio
import fnmatch
import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp

JWKS_TTL = 300.0
JWKS_REFETCH = 30.0
JWKS_TIMEOUT = 10.0
MAX_JWKS_BYTES = 1 << 20
MAX_TOKEN_CHARS = 8192
MAX_PERMISSIONS = 1000


class TokenError(Exception):
    """The token cannot be trusted (malformed, wrong signature, expired, unknown key)."""


@dataclass(frozen=True)
class TokenGrant:
    user: str
    permissions: tuple[tuple[str, str | None], ...]  # (action, path glob or None for every path)
    expires: float  # the token's exp (Unix time)

    def permits(self, action: str, path: str) -> bool:
        return any(a == action and (p is None or fnmatch.fnmatchcase(path, p)) for a, p in self.permissions)


async def fetch_json(url: str) -> Any:
    """GET a JSON document (bounded in size and time)."""
    timeout = aiohttp.ClientTimeout(total=JWKS_TIMEOUT)
    async with aiohttp.ClientSession(timeout=timeout) as session, session.get(url) as response:
        response.raise_for_status()
        body = await response.content.read(MAX_JWKS_BYTES + 1)
        if len(body) > MAX_JWKS_BYTES:
            raise ValueError("JWKS document too large")
        return json.loads(body)


class JwtVerifier:
    def __init__(
        self,
        *,
        algorithms: Sequence[str],
        key: str | None = None,
        jwks_url: str | None = None,
        claim: str = "streamd_permissions",
        audience: str | None = None,
        fetch: Callable[[str], Awaitable[Any]] = fetch_json,
    ) -> None:
        if (key is None) == (jwks_url is None):
            raise ValueError("give either a key or a JWKS URL")
        hmac_algorithms = [a for a in algorithms if a.upper().startswith("HS")]
        if hmac_algorithms and len(hmac_algorithms) != len(algorithms):
            raise ValueError("jwt_algorithms must not mix HMAC (HS*) with public-key algorithms")
        if hmac_algorithms and jwks_url is not None:
            raise ValueError("HMAC algorithms need jwt_key, not a JWKS URL")
        self.algorithms = list(algorithms)
        self.key = key
        self.jwks_url = jwks_url
        self.claim = claim
        self.audience = audience
        self._fetch = fetch
        self._keys: dict[str, Any] = {}  # kid ("" for keys without one) -> PyJWK
        self._fetched_at: float | None = None
        self._lock = asyncio.Lock()
        self.fetches = 0

    async def verify(self, token: str, now: float) -> TokenGrant:
        """The grant a valid token carries; TokenError otherwise. ``now``: monotonic seconds
        (for the JWKS cache; expiry is checked against the wall clock by PyJWT)."""
        if len(token) > MAX_TOKEN_CHARS:
            raise TokenError("token too long")
        import jwt

        try:
            key: Any = self.key if self.key is not None else await self._jwk(token, now)
            claims = jwt.decode(
                token,
                key,
                algorithms=self.algorithms,
                audience=self.audience,
                options={"require": ["exp"], "verify_aud": self.audience is not None},
            )
        except jwt.PyJWTError as exc:
            raise TokenError(f"{type(exc).__name__}: {exc}") from None
        return _grant(claims, self.claim)

    async def _jwk(self, token: str, now: float) -> Any:
        import jwt

        kid = str(jwt.get_unverified_header(token).get("kid") or "")
        async with self._lock:
            stale = self._fetched_at is None or now - self._fetched_at > JWKS_TTL
            unknown = kid not in self._keys and (
                self._fetched_at is None or now - self._fetched_at > JWKS_REFETCH
            )
            if stale or unknown:
                await self._refresh(now)
        if kid not in self._keys:
            if not kid and len(self._keys) == 1:
                return next(iter(self._keys.values())).key
            raise TokenError(f"no key {kid!r} in the JWKS")
        return self._keys[kid].key

    async def _refresh(self, now: float) -> None:
        assert self.jwks_url is not None
        import jwt

        self.fetches += 1
        self._fetched_at = now
        try:
            document = await self._fetch(self.jwks_url)
            keys = jwt.PyJWKSet.from_dict(document).keys
        except (aiohttp.ClientError, TimeoutError, ValueError, jwt.PyJWTError) as exc:
            raise TokenError(f"cannot fetch the JWKS: {exc}") from None
        self._keys = {str(k.key_id or ""): k for k in keys}


def _grant(claims: dict[str, Any], claim: str) -> TokenGrant:
    raw = claims.get(claim, [])
    if not isinstance(raw, list) or len(raw) > MAX_PERMISSIONS:
        raise TokenError(f"claim {claim!r} must be a list of {{action, path}} objects")
    permissions: list[tuple[str, str | None]] = []
    for item in raw:
        if not isinstance(item, dict) or not isinstance(item.get("action"), str):
            raise TokenError(f"claim {claim!r} must be a list of {{action, path}} objects")
        path = item.get("path")
        if path is not None and not isinstance(path, str):
            raise TokenError(f"claim {claim!r}: path must be a string")
        permissions.append((item["action"], None if path is None else path.strip("/")))
    return TokenGrant(str(claims.get("sub", "")), tuple(permissions), float(claims["exp"]))
