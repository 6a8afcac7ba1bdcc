"""What streamd allows without any ``[[users]]``: exactly the rules it had before authentication.

Reading and metrics are open, publishing is left to the path rules (``accepts_publisher``), and
``api`` (session ids and client addresses, drain, move) needs a client in ``admin_networks`` and,
when ``admin_token`` is set, ``Authorization: Bearer <admin_token>``. The local-user
:class:`Authorizer` replaces this one when the config has users.
"""

from __future__ import annotations

import hmac

from streamd.auth.model import ANONYMOUS, Authorizer, AuthRequest, AuthResult
from streamd.config import ServerConfig

ADMIN_CHALLENGE = 'Bearer realm="streamd admin"'


class DefaultAuthorizer:
    """Allows what an unconfigured streamd has always allowed (see the module docstring)."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config

    async def authorize(self, request: AuthRequest, now: float) -> AuthResult:
        if request.action != "api":
            return AuthResult(True, ANONYMOUS)
        if not self.config.allows_admin(request.client):
            return AuthResult(False, status=403, reason=f"{request.client} is not in admin_networks")
        token = self.config.admin_token
        if token is not None and not carries_bearer(request.authorization, token):
            return AuthResult(
                False,
                status=401,
                challenges=(ADMIN_CHALLENGE,),
                reason="api needs Authorization: Bearer <admin_token>",
            )
        return AuthResult(True, "admin")


def carries_bearer(authorization: str | None, token: str) -> bool:
    """``Authorization: Bearer <token>``, compared in constant time."""
    scheme, _, value = (authorization or "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(value.strip().encode(), token.encode())


def unconfigured(config: ServerConfig) -> bool:
    """No ``[[users]]``, no hook, no JWT: the pre-authentication rules hold, and what used to be
    shown to everyone (the address-free session list, the drain status) still is."""
    external = ("auth_hook", "jwt_key", "jwt_key_file", "jwt_jwks_url")
    return not getattr(config, "users", None) and not any(getattr(config, k, None) for k in external)


class AdminRuleByDefault:
    """``api`` by the pre-authentication rule (``admin_networks`` + ``admin_token``) while nothing
    is configured, everything else by ``inner``: the HTTP admin endpoints and the session list
    keep answering exactly as before for servers without ``[[users]]``, hook or tokens."""

    def __init__(self, inner: Authorizer, config: ServerConfig) -> None:
        self.inner = inner
        self.config = config
        self.default = DefaultAuthorizer(config)
        if hasattr(inner, "may"):  # a user's permissions without credentials (HTTP list filters)
            self.may = inner.may

    async def authorize(self, request: AuthRequest, now: float) -> AuthResult:
        if request.action == "api" and unconfigured(self.config):
            return await self.default.authorize(request, now)
        return await self.inner.authorize(request, now)
