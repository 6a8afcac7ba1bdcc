"""The encryption policy at the auth seam: every protocol's :class:`AuthRequest` carries whether
its connection is secure, so one wrapper refuses what a strict path would get in clear (RTSP,
RTSP over HTTP, HTTP pages and downloads) before any credential is looked at."""

from __future__ import annotations

from collections.abc import Callable

from streamd.auth.model import Authorizer, AuthRequest, AuthResult
from streamd.security.policy import decide


class EncryptionGate:
    """An :class:`Authorizer` that applies ``policy(path)`` first, then asks ``inner``."""

    def __init__(self, inner: Authorizer, policy: Callable[[str], str]) -> None:
        self.inner = inner
        self.policy = policy
        self.refused = 0  # requests refused for arriving in clear

    async def authorize(self, request: AuthRequest, now: float) -> AuthResult:
        refusal = decide(self.policy(request.path), request.secure)
        if refusal is not None:
            self.refused += 1
            return AuthResult(False, status=refusal.status, reason=refusal.reason)
        return await self.inner.authorize(request, now)

    def __getattr__(self, name: str) -> object:  # the inner authorizer's extras (counters, ...)
        return getattr(self.inner, name)
