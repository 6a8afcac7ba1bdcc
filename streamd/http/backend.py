"""What the HTTP side needs of the RTSP side, as Protocols (the composed server provides them)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Protocol

from streamd.auth.model import Authorizer
from streamd.catalog import Resolved
from streamd.config import ServerConfig
from streamd.connection import ConnectionOwner
from streamd.live.hub import LivePath
from streamd.live.multicast import MulticastService
from streamd.live.recorder import Recordings
from streamd.relocator import Relocator
from streamd.tls.acceptor import Handshakes


class PathsView(Protocol):
    """Paths as pages, listings and the /mp4 fallback see them."""

    @property
    def live(self) -> Mapping[str, LivePath]: ...

    @property
    def web_viewers(self) -> Counter[str]: ...

    multicast: MulticastService
    recordings: Recordings

    async def resolve(self, path: str) -> Resolved: ...

    def live_paths(self) -> list[str]: ...

    def viewers(self, path: str) -> int: ...


class SessionView(Protocol):
    """Sessions as the API and the metrics see them."""

    def snapshot(
        self, *, private: bool = True, offset: int = 0, limit: int | None = None
    ) -> list[dict[str, object]]: ...

    def session_count(self) -> int: ...


class HttpBackend(PathsView, SessionView, ConnectionOwner, Protocol):
    """Everything the HTTP service uses: paths, sessions, admin actions, and the RTSP connections
    it runs for tunnels and hands over from the RTSP port."""

    config: ServerConfig
    relocator: Relocator
    authorizer: Authorizer  # every HTTP route and tunnel asks it (streamd.http.access)

    @property
    def rtsp_port(self) -> int: ...

    @property
    def rtsps_port(self) -> int | None:
        """The RTSPS port (None without TLS)."""
        ...

    def auth_metrics(self) -> dict[str, int]: ...

    def handshakes(self, what: str) -> Handshakes:
        """TLS handshakes for a listener with the server's certificate (only when config.tls)."""
        ...
