"""The HTTP side of streamd: web pages, SDP links, downloads, fMP4 fallback, tunnels, API, metrics."""

from streamd.http.app import HttpService, build_app

__all__ = ["HttpService", "build_app"]
