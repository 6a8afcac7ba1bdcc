"""What a URL path names: a live path being published, a relayed upstream, or a file of the catalog.

Owns the live paths (online and offline), the relays pulled on demand and the count of browsers
watching over HTTP; tells multicast and recording when a path comes and goes.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Protocol

from streamd.catalog import Catalog, Resolved
from streamd.config import ServerConfig
from streamd.live.hub import LivePath
from streamd.live.live_presentation import live_presentation
from streamd.live.multicast import MulticastService
from streamd.live.reader import LiveReader
from streamd.live.recorder import Recordings
from streamd.live.relay import Relay, RelayHooks
from streamd.rtsp.errors import RtspError
from streamd.workers.ownership import LocalOwners, PathOwners

log = logging.getLogger("streamd")


class SiblingPaths(Protocol):
    async def pull(self, path: str) -> LivePath | None:
        """``path`` relayed from the sibling worker that publishes it, online (None: nobody does)."""
        ...

    def is_relay(self, live: LivePath) -> bool:
        """Whether ``live`` is a sibling's path relayed here (not a publisher of ours)."""
        ...


RELAY_START_TIMEOUT = 10.0  # a reader's DESCRIBE waits this long for a relayed upstream to play


class Paths:
    def __init__(
        self,
        config: ServerConfig,
        catalog: Catalog,
        multicast: MulticastService,
        recordings: Recordings,
        sessions_on: Callable[[str], int],
        user_agent: str,
    ) -> None:
        self.config = config
        self.catalog = catalog
        self.multicast = multicast
        self.recordings = recordings  # live paths with record = true, written to files
        self._sessions_on = sessions_on
        self._user_agent = user_agent
        self.live: dict[str, LivePath] = {}
        self.relays: dict[str, Relay] = {}  # paths with a configured source, pulled on demand
        self.web_viewers: Counter[str] = Counter()  # browsers watching a live path over HTTP
        # who publishes which path across processes (streamd.workers; one process: every claim holds)
        self.owners: PathOwners = LocalOwners()
        # live paths published in a sibling worker process, relayed here (streamd.workers)
        self.siblings: SiblingPaths | None = None
        # in a cluster: a live path published on another node, pulled from it (streamd.cluster.edge)
        self.remote: Callable[[str], Awaitable[LivePath | None]] | None = None

    async def resolve(self, path: str) -> Resolved:
        """A live path being published, else a file (or the test stream) from the catalog."""
        live = self.live.get(path)
        if self.config.path_settings(path).source is not None:
            live = await self._pull(path)  # also tells the relay a reader is coming
        if self.siblings is not None and (live is None or not live.online or self.siblings.is_relay(live)):
            # published in a sibling worker (a relay here is checked: its publisher may have changed)
            pulled = await self.siblings.pull(path)
            live = pulled or (None if live is not None and self.siblings.is_relay(live) else live)
        if (
            self.remote is not None
            and self.config.path_settings(path).source is None
            and (live is None or not live.online)
            and self.config.accepts_publisher(path)
        ):
            live = await self.remote(path) or live  # published on another node of the cluster
        if live is not None and live.online:
            return Resolved(live_presentation(live), Path(""))
        on_disk = self.catalog.media_dir is not None and (self.catalog.media_dir / path).is_file()
        if (live is not None or self.config.accepts_publisher(path)) and not on_disk:
            raise RtspError(404, f"nothing is being published on {path!r} (offline)")
        return await self.catalog.resolve(path)

    def live_paths(self) -> list[str]:
        """Paths being published right now, sorted."""
        return sorted(name for name, live in self.live.items() if live.online)

    def viewers(self, path: str) -> int:
        """How many sessions are set up on ``path`` right now, and browsers watching it."""
        return self._sessions_on(path) + self.web_viewers[path]

    def busy(
        self, path: str, publisher_alive: Callable[[str], bool], besides: LivePath | None = None
    ) -> bool:
        """Whether someone else publishes ``path`` (online, or announced by a session still alive)."""
        existing = self.live.get(path)
        if existing is None or existing is besides:
            return False
        if self.siblings is not None and self.siblings.is_relay(existing):
            return False  # a sibling worker's path, relayed here: the claim across workers decides
        return existing.online or publisher_alive(existing.publisher)

    async def claim(self, path: str, holder: str) -> None:
        """Take ``path`` for a publisher across processes (403 when another process has it)."""
        if await self.owners.claim(path, holder) is not None:
            raise RtspError(403, f"{path!r} is already being published by another client", body="busy\n")

    def release(self, path: str, holder: str) -> None:
        self.owners.release(path, holder)

    def add_live(self, live: LivePath) -> None:
        """Serve ``live`` (a publisher's RECORD, a relay, ``streamd.embed``); ValueError when busy."""
        existing = self.live.get(live.name)
        if existing is not None and existing is not live and existing.online:
            raise ValueError(f"{live.name!r} is already being published")
        log.info("%s: %s is live", live.publisher, live.name)
        self.go_online(live)

    def go_online(self, live: LivePath) -> None:
        """``live`` is served from now on (a publisher's RECORD, once checked that nobody else is)."""
        live.online = True
        self.live[live.name] = live
        self.multicast.path_online(live)
        self.recordings.start(live)

    def remove_live(self, live: LivePath, label: str = "") -> None:
        """Take ``live`` offline: its readers get RTCP BYE, DESCRIBE answers 404."""
        if not live.online and self.live.get(live.name) is not live:
            return  # offline already (a publisher's PAUSE, then its TEARDOWN), or never online
        if self.live.get(live.name) is live:
            del self.live[live.name]
        live.online = False
        self.multicast.path_offline(live)
        self.recordings.stop(live)
        for reader in list(live.readers):
            if isinstance(reader, LiveReader):
                reader.detach(bye=True)
        log.info("%s: %s is offline (%d units relayed)", label or live.publisher, live.name, live.units_in)

    def relay_hooks(self, path: str, kind: str = "relay") -> RelayHooks:
        """How a relay of ``path`` tells these paths who reads and when it goes on or offline."""
        return RelayHooks(
            viewers=lambda: self.viewers(path),
            online=self.add_live,
            offline=lambda live, reason: self.remove_live(live, f"{kind} ({reason})"),
        )

    async def _pull(self, path: str) -> LivePath:
        """The relayed path, online: its upstream is pulled now if it is not yet (503/404 if it fails)."""
        relay = self.relays.get(path)
        if relay is None:
            settings = self.config.path_settings(path)
            assert settings.source is not None
            relay = Relay(
                path,
                settings.source,
                self.relay_hooks(path),
                transport=settings.source_transport,
                close_after=settings.source_close_after,
                user_agent=self._user_agent,
                tls_verify=settings.upstream_tls_verify,
            )
            self.relays[path] = relay
        return await relay.wait_online(RELAY_START_TIMEOUT)

    async def close(self) -> None:
        await asyncio.gather(*(relay.stop() for relay in self.relays.values()))
