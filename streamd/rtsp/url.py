"""Request URIs: which presentation and which track a request names.

Clients send absolute ``rtsp://host:port/path`` URIs (some send just ``/path`` or ``*``);
track URIs add one component, ``trackID=N``, to the presentation URL (our SDP's relative
``a=control`` resolved against ``Content-Base``).
"""

from __future__ import annotations

import re
from urllib.parse import unquote, urlsplit

from streamd.rtsp.errors import RtspError

_CONTROL = re.compile(r"^trackID=\d+$")
MAX_URI_LENGTH = 4096


def request_path(uri: str) -> str:
    """The percent-decoded path of a request URI, without leading or trailing slashes."""
    if len(uri) > MAX_URI_LENGTH:
        raise RtspError(414, "request URI too long")
    if uri == "*":
        return ""
    try:
        parts = urlsplit(uri)
        path = unquote(parts.path, errors="strict")
    except (ValueError, UnicodeDecodeError) as exc:
        raise RtspError(400, f"malformed request URI: {exc}") from exc
    if parts.scheme and parts.scheme.lower() not in ("rtsp", "rtspu", "rtsps", "http"):
        raise RtspError(400, f"unsupported URI scheme {parts.scheme!r}")
    return path.strip("/")


def split_control(path: str) -> tuple[str, str | None]:
    """``"movies/a.mp4/trackID=1"`` -> ``("movies/a.mp4", "trackID=1")``; no control -> None."""
    head, _, last = path.rpartition("/")
    if _CONTROL.match(last):
        return head, last
    return path, None


def base_url(uri: str) -> str:
    """The request URL without query and with exactly one trailing slash (our Content-Base)."""
    parts = urlsplit(uri)
    return f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}/"
