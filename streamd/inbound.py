"""Packets from clients, delivered along the routing table: a reader's RTCP receiver reports update
its senders' reception statistics; a publisher's RTP and RTCP feed its live path. Either keeps the
session alive (RTCP is a keep-alive for players that send nothing else)."""

from __future__ import annotations

from collections.abc import Callable, Hashable

from aiortc.rtp import RtcpRrPacket, RtcpSrPacket

from streamd.routing import Address, PacketRoutes, Route
from streamd.rtp.clock import unix_to_ntp
from streamd.rtp.rtcp import parse_compound
from streamd.server_session import PlayerSession, PublisherSession
from streamd.sessions import SessionRegistry


class Inbound:
    def __init__(
        self,
        sessions: SessionRegistry,
        routes: PacketRoutes,
        monotonic: Callable[[], float],
        wall: Callable[[], float],
    ) -> None:
        self._sessions = sessions
        self._routes = routes
        self._monotonic = monotonic  # the loop's clock: session activity
        self._wall = wall  # unix time: RTCP round-trip arithmetic

    def rtp_datagram(self, data: bytes, address: Address) -> bool:
        """A datagram at our RTP socket; True when it was a publisher's."""
        route = self._routes.udp(address, rtcp=False)
        if route is None:
            return False
        self._deliver(route, data)
        return True

    def rtcp_datagram(self, data: bytes, address: Address) -> None:
        route = self._routes.udp(address, rtcp=True)
        if route is not None:
            self._deliver(route, data)

    def interleaved(self, connection: Hashable, channel: int, data: bytes) -> None:
        route = self._routes.channel(connection, channel)
        if route is not None:
            self._deliver(route, data)

    def _deliver(self, route: Route, data: bytes) -> None:
        session = self._sessions.get(route.session_id)
        if session is not None and session.srtp is not None:  # authenticated before it counts
            srtp = session.srtp
            clear = srtp.rtcp_in(route.track, data) if route.is_rtcp else srtp.rtp_in(route.track, data)
            if clear is None:
                return  # bad tag, replay, or no key of the client's: dropped and counted
            data = clear
        if isinstance(session, PublisherSession):
            session.last_activity = self._monotonic()
            feed(session, route.track, route.is_rtcp, data)
        elif isinstance(session, PlayerSession) and route.is_rtcp:
            self.receiver_report(session, data)

    def receiver_report(self, session: PlayerSession, data: bytes) -> None:
        session.last_activity = self._monotonic()
        now_ntp = unix_to_ntp(self._wall())
        streams = {b.stream.ssrc: b.stream for b in session.bindings.values()}
        for packet in parse_compound(data):
            if isinstance(packet, RtcpRrPacket | RtcpSrPacket):
                for report in packet.reports:
                    stream = streams.get(report.ssrc)
                    if stream is not None:
                        stream.reception.update(
                            report, stream.clock_rate, now_ntp, stream.sr_sent_at(report.lsr)
                        )


def feed(session: PublisherSession, index: int, is_rtcp: bool, data: bytes) -> None:
    """A publisher's packet into its live path (RTP) or its clock mapping (RTCP SR)."""
    live = session.publishing
    track = live.tracks.get(index)
    if track is None:
        return
    if not is_rtcp:
        live.on_rtp(track, data)
        return
    for packet in parse_compound(data):
        if isinstance(packet, RtcpSrPacket):
            live.on_sender_report(track, packet.sender_info.ntp_timestamp, packet.sender_info.rtp_timestamp)
