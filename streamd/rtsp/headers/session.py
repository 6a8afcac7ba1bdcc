"""The ``Session`` header (RFC 2326 section 12.37): an opaque id plus an optional ``timeout``.

Servers must always send the timeout: ffmpeg, GStreamer and VLC pace their keep-alives from it.
"""

from __future__ import annotations

import re

from streamd.rtsp.errors import RtspError

__all__ = ["format_session", "parse_session"]

# RFC 2326 "safe" characters plus alphanumerics; at least 8 is recommended, 64 is our cap.
SESSION_ID_RE = re.compile(r"[A-Za-z0-9$\-_.+]{1,64}")


def parse_session(value: str) -> tuple[str, int | None]:
    """``(id, timeout)``; an unreadable ``timeout`` parameter counts as absent.

    Raises ``RtspError(454)`` for a missing or malformed id: no session can have it.
    """
    session_id, *params = value.split(";")
    session_id = session_id.strip()
    if not SESSION_ID_RE.fullmatch(session_id):
        raise RtspError(454, f"invalid session id {session_id[:80]!r}")
    timeout = None
    for param in params:
        name, _, raw = param.partition("=")
        raw = raw.strip()
        if name.strip().lower() == "timeout" and raw.isascii() and raw.isdigit() and len(raw) <= 9:
            timeout = int(raw)
    return session_id, timeout


def format_session(session_id: str, timeout: int | None = None) -> str:
    """``id;timeout=60`` (or just ``id``)."""
    if not SESSION_ID_RE.fullmatch(session_id):
        raise ValueError(f"invalid session id {session_id!r}")
    if timeout is None:
        return session_id
    if timeout < 0:
        raise ValueError(f"negative session timeout {timeout}")
    return f"{session_id};timeout={timeout}"
