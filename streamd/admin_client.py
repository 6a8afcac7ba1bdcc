"""``streamd drain`` and ``streamd move``: call a running server's admin API (stdlib HTTP only).

Bodies go as JSON (the server refuses anything else); with ``admin_token`` set on the server,
put the same token in the ``STREAMD_ADMIN_TOKEN`` environment variable.
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from typing import Any

DEFAULT_API = "http://127.0.0.1:8080"
TOKEN_VARIABLE = "STREAMD_ADMIN_TOKEN"


class AdminError(Exception):
    """The server refused, or could not be reached; the message says which and why."""


def call(api: str, method: str, endpoint: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    data = None if body is None else json.dumps(body).encode()
    headers = {"Content-Type": "application/json"}
    if token := os.environ.get(TOKEN_VARIABLE):
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(api.rstrip("/") + endpoint, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        raise AdminError(exc.read().decode(errors="replace").strip() or str(exc)) from None
    except (urllib.error.URLError, OSError) as exc:
        raise AdminError(f"cannot reach {api}: {getattr(exc, 'reason', exc)}") from None


def drain(api: str, targets: list[str], grace: float, *, wait: bool, echo: Any = print) -> int:
    """Start draining; with ``wait``, poll until no session is left (or the grace is long past)."""
    status = call(api, "POST", "/api/v1/drain", {"to": targets, "grace": grace})
    where = ", ".join(targets) if targets else "nowhere (new clients get 503)"
    echo(f"draining to {where}: {status['redirected']} playing client(s) sent a REDIRECT")
    if not wait:
        return 0
    deadline = time.monotonic() + grace + 10
    while True:
        left = call(api, "GET", "/api/v1/drain")["sessions"]
        if left == 0:
            echo("drained: no sessions left; the server can be stopped")
            return 0
        if time.monotonic() > deadline:
            echo(f"{left} session(s) still open")
            return 1
        time.sleep(1)


def stop_draining(api: str, *, echo: Any = print) -> int:
    call(api, "DELETE", "/api/v1/drain")
    echo("accepting sessions again")
    return 0


def move(api: str, path: str, targets: list[str], *, echo: Any = print) -> int:
    result = call(api, "POST", "/api/v1/move/" + path.strip("/"), {"to": targets})
    if result["to"]:
        echo(f"{result['path']} moved to {', '.join(result['to'])}: {result['redirected']} client(s) told")
    else:
        echo(f"{result['path']} is served here again")
    return 0
