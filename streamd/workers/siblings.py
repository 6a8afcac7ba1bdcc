"""Live paths published in a sibling worker, read here through a relay over its private socket.

A reader that lands on a worker without the path's publisher gets the path from the owning
worker: one :class:`~streamd.live.relay.Relay` per path (RTSP interleaved over the owner's unix
socket), shared by every local reader, closed ``close_after`` seconds after the last leaves, just
like a relay of a configured upstream. The relayed path is served here but neither recorded nor
sent to multicast here: the owner does that once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from urllib.parse import quote

from streamd.live.hub import LivePath
from streamd.live.reader import LiveReader
from streamd.live.relay import Relay, RelayHooks
from streamd.workers.internal import socket_path
from streamd.workers.ownership import Owner, PathOwners

log = logging.getLogger("streamd")

START_TIMEOUT = 10.0
CLOSE_AFTER = 10.0  # seconds without local readers before the relay from the sibling closes


class SiblingRelays:
    def __init__(
        self,
        me: int,
        run_dir: Path,
        owners: PathOwners,
        live: dict[str, LivePath],
        viewers: Callable[[str], int],
        user_agent: str,
    ) -> None:
        self.me = me
        self.run_dir = run_dir
        self.owners = owners
        self.live = live  # the server's live paths (Paths.live)
        self.viewers = viewers
        self.user_agent = user_agent
        self.relays: dict[str, tuple[Owner, Relay]] = {}  # path -> (whom it pulls from, relay)

    async def pull(self, path: str) -> LivePath | None:
        owner = await self.owners.owner(path)
        if owner is None or owner.worker == self.me or owner.worker < 0:
            return None
        current = self.relays.get(path)
        if current is not None and (current[0] != owner or current[1].retrying):
            # another publisher now (its relay here may not have seen the old one's BYE yet), or
            # back after a pause: pull again at once, not after back-off
            await current[1].stop()
            current = None
        if current is None:
            sock = socket_path(self.run_dir, owner.worker)
            relay = Relay(
                path,
                f"rtsp://worker-{owner.worker}/{quote(path)}",
                RelayHooks(
                    viewers=lambda: self.viewers(path),
                    online=self._online,
                    offline=self._offline,
                ),
                transport="tcp",
                close_after=CLOSE_AFTER,
                user_agent=self.user_agent,
                opener=_unix(sock),
            )
            relay.label = f"relay {path} <- worker {owner.worker}"
            current = self.relays[path] = (owner, relay)
        return await current[1].wait_online(START_TIMEOUT)

    def is_relay(self, live: LivePath) -> bool:
        return any(relay.live is live for _, relay in self.relays.values())

    def _online(self, live: LivePath) -> None:
        existing = self.live.get(live.name)
        if existing is not None and existing.online and not self.is_relay(existing):
            return  # a publisher of ours took the path meanwhile: it is served, not the relay
        live.online = True
        self.live[live.name] = live
        for _, relay in self.relays.values():
            if relay.live is live:  # a reader's PLI here reaches the publisher on the owner
                live.request_keyframe = relay.request_keyframe

    def _offline(self, live: LivePath, reason: str) -> None:
        if self.live.get(live.name) is live:
            del self.live[live.name]
        live.online = False
        for reader in list(live.readers):
            if isinstance(reader, LiveReader):
                reader.detach(bye=True)
        log.info("%s: offline here (%s)", live.name, reason)

    async def close(self) -> None:
        await asyncio.gather(*(relay.stop() for _, relay in self.relays.values()))


def _unix(path: Path) -> Callable[[], Awaitable[tuple[asyncio.StreamReader, asyncio.StreamWriter]]]:
    return lambda: asyncio.open_unix_connection(str(path))
