"""streamd: an RTSP streaming media server; ``streamd.Server`` / ``streamd.serve_in_thread`` embed it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from streamd.version import __version__

__all__ = ["Server", "ServerThread", "__version__", "serve_in_thread"]

if TYPE_CHECKING:
    from streamd.embed import Server, ServerThread, serve_in_thread


def __getattr__(name: str) -> Any:
    # imported on first use: `streamd --help` and the protocol modules need neither PyAV nor numpy
    if name in ("Server", "ServerThread", "serve_in_thread"):
        from streamd import embed

        return getattr(embed, name)
    raise AttributeError(f"module 'streamd' has no attribute {name!r}")
