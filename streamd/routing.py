"""One routing table for the RTP and RTCP clients send us: by UDP source address, or by interleaved
channel on an RTSP connection, to (session, track, RTP or RTCP).

Readers send RTCP receiver reports (routed by the client's RTCP port, or its interleaved RTCP
channel); publishers send RTP and RTCP (routed by the ports or channels negotiated in their SETUP,
and only those: a datagram from any other port, or RTP arriving at the RTCP socket, is dropped).
The table also answers which interleaved channels a connection has in use.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass

Address = tuple[str, int]


@dataclass(frozen=True)
class Route:
    session_id: str
    track: int
    is_rtcp: bool
    publisher: bool = False


class PacketRoutes:
    def __init__(self) -> None:
        self._udp: dict[Address, Route] = {}
        self._channels: dict[Hashable, dict[int, Route]] = {}  # connection -> channel -> route

    # --- adding and forgetting ---------------------------------------------------------------

    def add_udp(self, address: Address, route: Route) -> None:
        self._udp[address] = route

    def add_channel(self, connection: Hashable, channel: int, route: Route) -> None:
        self._channels.setdefault(connection, {})[channel] = route

    def forget_track(self, session_id: str, track: int) -> None:
        self._forget(lambda r: r.session_id == session_id and r.track == track)

    def forget_session(self, session_id: str) -> None:
        self._forget(lambda r: r.session_id == session_id)

    def forget_connection(self, connection: Hashable) -> None:
        self._channels.pop(connection, None)

    def _forget(self, match: object) -> None:
        assert callable(match)
        for address in [a for a, r in self._udp.items() if match(r)]:
            del self._udp[address]
        for connection, channels in list(self._channels.items()):
            for channel in [c for c, r in channels.items() if match(r)]:
                del channels[channel]
            if not channels:
                del self._channels[connection]

    # --- lookups ---------------------------------------------------------------------------

    def udp(self, address: Address, *, rtcp: bool) -> Route | None:
        """The route of a datagram from ``address`` that arrived at our RTP (or RTCP) socket."""
        route = self._udp.get(address)
        if route is None or route.is_rtcp != rtcp:
            return None
        return route

    def channel(self, connection: Hashable, channel: int) -> Route | None:
        return self._channels.get(connection, {}).get(channel)

    def used_channels(self, connection: Hashable, *, besides: tuple[str, int] | None = None) -> set[int]:
        """Interleaved channels in use on ``connection`` (not counting track ``besides``'s own)."""
        used: set[int] = set()
        for channel, route in self._channels.get(connection, {}).items():
            if besides is None or (route.session_id, route.track) != besides:
                used.add(channel)
        return used

    def __len__(self) -> int:
        return len(self._udp) + sum(len(c) for c in self._channels.values())
