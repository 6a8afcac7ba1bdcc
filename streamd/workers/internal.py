"""A worker's private RTSP socket, where its siblings pull the live paths it publishes.

A unix socket in the parent's private folder (mode 0700): only this user's processes reach it, so
what arrives there is a sibling worker and is not asked for credentials again (the reader was
authorized where it connected). Connections there carry the peer name :data:`SIBLING`.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from streamd.auth.model import Authorizer, AuthRequest, AuthResult
from streamd.connection import ConnectionOwner, RtspConnection

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


class _Named(asyncio.Transport):
    """A unix socket's transport that says who is at the other end (unix peers have no address)."""

    def __init__(self, inner: asyncio.Transport) -> None:
        super().__init__()
        self._inner = inner

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name in ("peername", "sockname"):
            return (SIBLING, 0)
        if name == "socket":
            return default  # never handed over
        return self._inner.get_extra_info(name, default)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self._inner.write(data)

    def is_closing(self) -> bool:
        return self._inner.is_closing()

    def close(self) -> None:
        self._inner.close()

    def abort(self) -> None:
        self._inner.abort()

    def pause_reading(self) -> None:
        self._inner.pause_reading()

    def resume_reading(self) -> None:
        self._inner.resume_reading()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self._inner.set_write_buffer_limits(high, low)

    def get_write_buffer_size(self) -> int:
        return self._inner.get_write_buffer_size()


class SiblingConnection(RtspConnection):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(_Named(transport))  # type: ignore[arg-type]


async def listen(server: ConnectionOwner, path: Path) -> asyncio.AbstractServer:
    path.unlink(missing_ok=True)  # left by a worker that died
    loop = asyncio.get_running_loop()
    return await loop.create_unix_server(lambda: SiblingConnection(server), str(path))
