"""streamd: an RTSP streaming media server; ``streamd.Server`` / ``streamd.serve_in_thread`` embed it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["Server", "ServerThread", "__version__", "serve_in_thread"]

if TYPE_CHECKING:
    from streamd.api import Server, ServerThread, serve_in_thread


def __getattr__(name: str) -> Any:
    # imported on first use: `streamd --help` and the protocol modules need neither PyAV nor numpy
    if name in ("Server", "ServerThread", "serve_in_thread"):
        from streamd import api

        return getattr(api, name)
    raise AttributeError(f"module 'streamd' has no attribute {name!r}")
