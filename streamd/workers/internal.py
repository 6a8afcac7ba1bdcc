"""A worker's private RTSP socket, where its siblings pull the live paths it publishes.

A unix socket in the parent's private folder (mode 0700): only this user's processes reach it, so
what arrives there is a sibling worker and is not asked for credentials again (the reader was
authorized where it connected). Connections there carry the peer name :data:`SIBLING`.

Clients' connections never arrive here: a TLS connection forwarded from a sibling comes to the
worker's other unix socket (:mod:`.forwarded`), as the client it is, and is authorized as such.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from streamd.auth.model import Authorizer, AuthRequest, AuthResult
from streamd.connection import ConnectionOwner, RtspConnection
from streamd.workers.presented import Presented

SIBLING = "streamd-worker"  # the client address of a sibling worker's connection


def socket_path(run_dir: Path, index: int) -> Path:
    return run_dir / f"worker-{index}.sock"


class TrustSiblings:
    """The server's authorizer, except that sibling workers' RTSP requests are allowed."""

    def __init__(self, inner: Authorizer) -> None:
        self.inner = inner

    async def authorize(self, request: AuthRequest, now: float) -> AuthResult:
        if request.protocol == "rtsp" and request.client == SIBLING:
            return AuthResult(True, user=None, reason="sibling worker")
        return await self.inner.authorize(request, now)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class SiblingConnection(RtspConnection):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        named = {"peername": (SIBLING, 0), "sockname": (SIBLING, 0)}  # unix peers have no address
        super().connection_made(Presented(transport, named))  # type: ignore[arg-type]


async def listen(server: ConnectionOwner, path: Path) -> asyncio.AbstractServer:
    path.unlink(missing_ok=True)  # left by a worker that died
    loop = asyncio.get_running_loop()
    return await loop.create_unix_server(lambda: SiblingConnection(server), str(path))
