"""A worker's side of the whole server's multicast groups (:mod:`.multicast_table` is the parent's).

:class:`ChannelGroups` is the worker's :class:`~streamd.live.multicast.GroupLink`: it asks the
parent for a path's group before a multicast SETUP (one round trip per SETUP, none per packet)
and tells it the worker's sessions on the group after each change. It also answers the parent:
``mcast_prepare`` (this worker sends a path's group for another worker's readers: its send, made
if needed), ``mcast_demand`` (how many sessions of the other workers play it) and ``mcast_gone``
(the worker that sent a group this one mirrors died).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from streamd.live.hub import LivePath
from streamd.live.multicast import Grant, MulticastService
from streamd.rtsp.errors import RtspError
from streamd.srtp.suites import MasterKey, suite_named
from streamd.workers.channel import Channel, ChannelError
from streamd.workers.multicast_table import allocation_of


class ChannelGroups:
    def __init__(
        self,
        me: int,
        channel: Channel,
        service: MulticastService,
        live: dict[str, LivePath],
        relayed: Callable[[LivePath], bool],
    ) -> None:
        self.me = me
        self.channel = channel
        self.service = service
        self.live = live  # the worker's live paths (Paths.live)
        self.relayed = relayed  # a path relayed from a sibling has no source of its own here

    def install(self) -> None:
        self.service.link = self

    async def hold(self, live: LivePath) -> Grant:
        try:
            answer = await self.channel.request(
                "mcast_hold", path=live.name, tracks=sorted(live.tracks), source=not self.relayed(live)
            )
        except ChannelError as exc:
            raise RtspError(503, f"no multicast group for {live.name!r} across the workers: {exc}") from None
        if "refused" in answer:
            status, reason = answer["refused"]
            raise RtspError(int(status), str(reason))
        allocation = allocation_of(live.name, answer)
        if int(answer["sender"]) == self.me:
            return Grant(allocation, here=True)
        return Grant(
            allocation,
            here=False,
            ssrcs={int(i): int(v) for i, v in (answer.get("ssrcs") or {}).items()},
            seqs={int(i): int(v) for i, v in (answer.get("seqs") or {}).items()},
            key=key_of(answer.get("key")),
        )

    def report(self, path: str, playing: int, setups: int, held: bool) -> None:
        message = {"op": "mcast_state", "path": path, "playing": playing, "setups": setups, "held": held}
        self.channel.send(message)

    def handle(self, message: dict[str, Any]) -> Any:
        """The parent's ``mcast_prepare`` and ``mcast_demand``."""
        path = str(message.get("path", ""))
        if message.get("op") == "mcast_gone":
            self.service.sender_gone(path)
            return None
        if message.get("op") == "mcast_demand":
            self.service.remote_demand(path, int(message.get("playing", 0)), int(message.get("setups", 0)))
            return None
        if message.get("op") == "mcast_prepare":
            live = self.live.get(path)
            if live is None or not live.online or self.relayed(live):
                return None  # not ours (any more)
            return self.service.serve_for_others(live, allocation_of(path, message))
        raise ChannelError(f"unknown op {message.get('op')!r}")


def key_of(raw: Any) -> MasterKey | None:
    """The key :func:`~streamd.live.multicast.key_message` wrote."""
    if not isinstance(raw, dict):
        return None
    suite = suite_named(str(raw.get("suite", "")))
    if suite is None:
        raise RtspError(503, f"the sending worker's SRTP suite {raw.get('suite')!r} is unknown")
    return MasterKey(suite, bytes.fromhex(str(raw.get("material", ""))))
