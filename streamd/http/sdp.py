"""The SDP a web page links to: DESCRIBE's SDP with absolute ``rtsp://`` control URLs.

Fetched over HTTP there is no ``Content-Base``, so relative controls (``trackID=1``) would
resolve against the http:// URL; a player starting a session from this file needs the
presentation and each track addressed on the RTSP server itself.
"""

from __future__ import annotations

from urllib.parse import quote

from sdp import write as write_sdp
from streamd.rtp.presentation import Presentation


def absolute_sdp(presentation: Presentation, rtsp_root: str, server_address: str) -> str:
    """``rtsp_root`` is ``rtsp://host:port``; the presentation's name becomes the path."""
    url = f"{rtsp_root}/{quote(presentation.name)}"
    description = presentation.session_description(server_address)
    description.control = url
    for media in description.media:
        relative = media.control
        if relative is not None and "://" not in relative:
            media.control = f"{url}/{relative}"
    return write_sdp(description)
