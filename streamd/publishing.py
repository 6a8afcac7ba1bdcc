"""The publisher side of live paths: ANNOUNCE, SETUP with mode=record, RECORD (RFC 2326 10.3, 10.11),
and the RTP/RTCP a publisher sends, over UDP or interleaved, into its :class:`LivePath`."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from aiortc.rtp import RtcpSrPacket

from sdp import SdpParseError
from sdp import parse as parse_sdp
from streamd.catalog import Resolved
from streamd.connection import RtspConnection
from streamd.live.announced import announced_tracks
from streamd.live.hub import LivePath
from streamd.live.live_presentation import live_presentation
from streamd.rtp.rtcp import parse_compound
from streamd.rtsp.errors import RtspError
from streamd.rtsp.headers import TransportSpec, format_session, format_transport, parse_transport
from streamd.rtsp.message import Request, Response
from streamd.rtsp.session import RtspSession, State
from streamd.rtsp.url import request_path
from streamd.server_session import ServerSession
from streamd.transport.udp import Address

if TYPE_CHECKING:
    from streamd.server import AfterResponse, RtspServer

log = logging.getLogger("streamd")


class Publishing:
    """Publishers' sessions and where their packets go; the server hands these requests over."""

    def __init__(self, server: RtspServer) -> None:
        self._server = server
        self.routes: dict[Address, tuple[str, int, bool]] = {}  # UDP source -> session, track, RTCP

    async def announce(self, connection: RtspConnection, request: Request) -> tuple[Response, AfterResponse]:
        path = request_path(request.uri)
        if not self._server.config.accepts_publisher(path):
            raise RtspError(403, f"{path!r} does not accept publishers (paths under live/ do by default)")
        existing = self._server.live.get(path)
        if existing is not None and (existing.publisher in self._server.sessions or existing.online):
            raise RtspError(403, f"{path!r} is already being published by another client", body="busy\n")
        content_type = request.headers.get("Content-Type", "application/sdp").split(";")[0].strip().lower()
        if content_type != "application/sdp":
            raise RtspError(415, f"ANNOUNCE body must be application/sdp, not {content_type!r}")
        try:
            description = parse_sdp(request.body)
        except SdpParseError as exc:
            raise RtspError(400, f"announced SDP: {exc}") from exc
        tracks = announced_tracks(description.media)
        session = ServerSession(
            RtspSession(path, self._server.config.session_timeout),
            Resolved(live_presentation(None, path, tracks), Path("")),
            connection.peer[0],
            f"{connection.label} {path}",
        )
        session.publishing = LivePath.from_announce(path, description, tracks, session.id)
        session.publishing.on_overload = lambda why: self._server._begin_ending(session, why, send_bye=True)
        session.last_activity = asyncio.get_running_loop().time()
        self._server.sessions[session.id] = session
        connection.sessions.add(session.id)
        log.info(
            "%s: session %s ANNOUNCE (%s)",
            session.label,
            session.id,
            ", ".join(f"{t.track.codec}{'' if t.depacketize else ' relayed'}" for t in tracks),
        )
        response = Response(200)
        response.headers["Session"] = format_session(session.id, self._server.config.session_timeout)
        return response, None

    def setup_record(
        self, connection: RtspConnection, request: Request, session: ServerSession
    ) -> tuple[Response, AfterResponse]:
        live = session.publishing
        assert live is not None
        full = request_path(request.uri)
        control = full[len(live.name) :].lstrip("/") if full.startswith(live.name) else full
        track = live.track_by_control(control) or live.track_by_control(full)
        if track is None:
            raise RtspError(404, f"the announced SDP has no track {control!r}")
        header = request.headers.get("Transport")
        if not header:
            raise RtspError(461, "SETUP without a Transport header")
        offers = [o for o in parse_transport(header) if o.mode.upper() == "RECORD"]
        if not offers:
            raise RtspError(461, "a publisher's SETUP must say mode=record")
        offer = offers[0]
        if offer.lower_transport == "TCP":
            channels = offer.interleaved or self._server.free_channels(connection)
            session.channels[channels[0]] = (track.index, False)
            session.channels[channels[1]] = (track.index, True)
            session.connection = connection
            reply = TransportSpec(
                profile="RTP/AVP", lower_transport="TCP", cast="unicast", interleaved=channels, mode="RECORD"
            )
            how = f"TCP interleaved {channels[0]}-{channels[1]}"
        else:
            if self._server.udp is None or offer.client_port is None:
                raise RtspError(461, "UDP publishing needs client_port (and UDP enabled)")
            host = connection.peer[0]
            self.routes[(host, offer.client_port[0])] = (session.id, track.index, False)
            self.routes[(host, offer.client_port[1])] = (session.id, track.index, True)
            reply = TransportSpec(
                profile="RTP/AVP",
                lower_transport="UDP",
                cast="unicast",
                client_port=offer.client_port,
                server_port=(self._server.udp.rtp_port, self._server.udp.rtcp_port),
                mode="RECORD",
            )
            how = f"UDP {host}:{offer.client_port[0]}-{offer.client_port[1]}"
        if session.rtsp.state is State.INIT:
            session.rtsp.state = State.READY
        log.info(
            "%s: session %s SETUP record %s (%s) over %s",
            session.label,
            session.id,
            control,
            track.announced.track.codec,
            how,
        )
        response = Response(200)
        response.headers["Transport"] = format_transport(reply)
        response.headers["Session"] = format_session(session.id, self._server.config.session_timeout)
        return response, None

    async def record(self, connection: RtspConnection, request: Request) -> tuple[Response, AfterResponse]:
        session = self._server.session_of(request, required=True)
        assert session is not None
        live = session.publishing
        if live is None:
            raise RtspError(455, "RECORD without ANNOUNCE")
        if session.rtsp.state is State.INIT:
            raise RtspError(455, "RECORD before SETUP")
        existing = self._server.live.get(live.name)
        busy = existing is not None and (existing.publisher in self._server.sessions or existing.online)
        if busy and existing is not live:
            raise RtspError(403, f"{live.name!r} is already being published by another client")
        session.rtsp.state = State.PLAYING
        live.online = True
        self._server.live[live.name] = live
        log.info("%s: session %s RECORD: %s is live", session.label, session.id, live.name)
        self._server.multicast.path_online(live)
        self._server.recordings.start(live)
        response = Response(200)
        response.headers["Session"] = format_session(session.id, self._server.config.session_timeout)
        return response, None

    def rtp_received(self, data: bytes, addr: Address) -> bool:
        route = self.routes.get(addr)
        if route is None:
            return False
        self.data(route[0], route[1], route[2], data)
        return True

    def data(self, session_id: str, index: int, is_rtcp: bool, data: bytes) -> None:
        session = self._server.sessions.get(session_id)
        if session is None or session.publishing is None:
            return
        session.last_activity = asyncio.get_running_loop().time()
        live = session.publishing
        track = live.tracks.get(index)
        if track is None:
            return
        if not is_rtcp:
            live.on_rtp(track, data)
            return
        for packet in parse_compound(data):
            if isinstance(packet, RtcpSrPacket):
                live.on_sender_report(
                    track, packet.sender_info.ntp_timestamp, packet.sender_info.rtp_timestamp
                )

    def pause(self, session: ServerSession) -> None:
        """A publisher's PAUSE stops its stream: readers get BYE and the path goes offline at once
        (GStreamer's rtspclientsink pauses at end of stream and stays connected). RECORD resumes."""
        live = session.publishing
        assert live is not None
        self._server.remove_live(live, f"{session.label} PAUSE")

    def unpublish(self, session: ServerSession) -> None:
        live = session.publishing
        assert live is not None
        for address in [a for a, r in self.routes.items() if r[0] == session.id]:
            del self.routes[address]
        self._server.remove_live(live, session.label)
