"""The user the request being handled was authorized for.

Set by the RTSP dispatcher around each handler call (requests of one connection are handled one
at a time, each in its connection's task), read where sessions are made and looked up, so a
session is bound to its user without every handler signature carrying it.
"""

from __future__ import annotations

from contextvars import ContextVar

current_user: ContextVar[str | None] = ContextVar("current_user", default=None)
