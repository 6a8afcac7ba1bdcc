"""The publisher side of live paths: ANNOUNCE, SETUP with mode=record, RECORD (RFC 2326 10.3, 10.11).

The publisher's packets are routed by the ports or interleaved channels its SETUP negotiated
(:mod:`streamd.routing`) and fed to its live path by :mod:`streamd.inbound`.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from sdp import SdpParseError
from sdp import parse as parse_sdp
from sdp.model import SessionDescription
from streamd.auth.context import current_user
from streamd.catalog import Resolved
from streamd.config import ServerConfig
from streamd.handlers.common import Clock, LivePaths, Reply, session_of
from streamd.live.announced import AnnouncedTrack, announced_tracks
from streamd.live.hub import LivePath
from streamd.live.keyframe_relay import ChannelBack, PublisherFeedback, UdpBack
from streamd.live.live_presentation import live_presentation
from streamd.routing import PacketRoutes, Route
from streamd.rtp.clock import unix_to_ntp
from streamd.rtsp.errors import RtspError
from streamd.rtsp.headers import TransportSpec, format_transport, parse_transport
from streamd.rtsp.message import InterleavedFrame, Request, Response
from streamd.rtsp.server_session import (
    SRTP_PROFILES,
    GoOnline,
    RtspServerSession,
    TrackSetup,
    TransportFacts,
    choose_record_transport,
    free_channels,
)
from streamd.rtsp.transitions import Role
from streamd.rtsp.url import request_path
from streamd.server_session import Client, PublisherSession
from streamd.sessions import SessionRegistry
from streamd.srtp.announce import AnnouncedKeyError, announced_keys, mikey_sections
from streamd.srtp.mikey import MikeyError, format_key_mgmt
from streamd.srtp.offer import TrackKey
from streamd.srtp.session import SessionSrtp, client_key
from streamd.srtp.suites import MasterKey

log = logging.getLogger("streamd")


class PathClaims(Protocol):
    """Who may publish a path across a cluster (:class:`streamd.cluster.node.ClusterNode`)."""

    async def claim(self, path: str, holder: str) -> None:
        """Own ``path`` for the session ``holder``, or RtspError (403 taken elsewhere, 503 unknown)."""

    def release(self, path: str, holder: str) -> None: ...


class Publishing:
    """Publishers' requests, with the collaborators they need."""

    def __init__(
        self,
        config: ServerConfig,
        sessions: SessionRegistry,
        routes: PacketRoutes,
        paths: LivePaths,
        udp_ports: Callable[[], tuple[int, int] | None],
        clock: Clock,
        overloaded: Callable[[PublisherSession, str], object],
        claims: PathClaims | None = None,
        send_rtcp: Callable[[bytes, tuple[str, int]], None] | None = None,
        cname: str = "streamd",
    ) -> None:
        """``overloaded(session, why)`` ends a publisher whose packets cost more than its path's
        work budget (``LivePath.on_overload``); ``send_rtcp(data, address)`` sends from the
        server's RTCP port (keyframe requests to UDP publishers)."""
        self._config = config
        self._sessions = sessions
        self._routes = routes
        self._paths = paths
        self._udp_ports = udp_ports  # the server's RTP/RTCP ports, None without UDP
        self._clock = clock
        self._overloaded = overloaded
        self._claims = claims  # in a cluster: one publisher per path across the nodes
        self._send_rtcp = send_rtcp
        self._cname = cname

    @property
    def timeout(self) -> int:
        return max(self._config.session_timeout, self._config.min_session_timeout)

    def _alive(self, session_id: str) -> bool:
        return session_id in self._sessions

    async def announce(self, client: Client, request: Request) -> Reply:
        path = request_path(request.uri)
        if not self._config.accepts_publisher(path):
            raise RtspError(403, f"{path!r} does not accept publishers (paths under live/ do by default)")
        if self._paths.busy(path, self._alive):
            raise RtspError(403, f"{path!r} is already being published by another client", body="busy\n")
        self._sessions.check_new_publisher(client)
        content_type = request.headers.get("Content-Type", "application/sdp").split(";")[0].strip().lower()
        if content_type != "application/sdp":
            raise RtspError(415, f"ANNOUNCE body must be application/sdp, not {content_type!r}")
        try:
            description = parse_sdp(request.body)
        except SdpParseError as exc:
            raise RtspError(400, f"announced SDP: {exc}") from exc
        tracks = announced_tracks(description.media)
        keys = self._announced_keys(client, path, description)
        rtsp = RtspServerSession(path, self.timeout, role=Role.PUBLISHER)
        await self._paths.claim(path, rtsp.id)  # one publisher per path across worker processes
        if self._claims is not None:  # ... and across the cluster's nodes
            try:
                await self._claims.claim(path, rtsp.id)
            except BaseException:
                self._paths.release(path, rtsp.id)
                raise
        session = PublisherSession(
            rtsp=rtsp,
            resolved=Resolved(live_presentation(None, path, tracks), Path("")),
            client_host=client.peer[0],
            label=f"{client.label} {path}",
            owner=client,
            user=current_user.get(),
            publishing=LivePath.from_announce(path, description, tracks, rtsp.id),
        )
        if keys:
            session.srtp = SessionSrtp()
            for index, key in keys.items():
                session.srtp.receive_with(index, key)
        session.publishing.on_overload = lambda why: self._overloaded(session, why)
        session.feedback = PublisherFeedback(session.publishing, secrets.randbits(32), self._cname)
        session.publishing.request_keyframe = lambda: self._request_keyframe(session)
        session.last_activity = self._clock()
        self._sessions.add(session)
        client.sessions.add(session.id)
        log.info(
            "%s: session %s ANNOUNCE (%s)",
            session.label,
            session.id,
            ", ".join(f"{t.track.codec}{'' if t.depacketize else ' relayed'}" for t in tracks),
        )
        response = Response(200)
        response.headers["Session"] = session.rtsp.session_header
        if client.secure and self._encryption(path) != "no":
            self._tell_our_keys(request, response, session, description, tracks, keys)
        return response, None

    def _tell_our_keys(
        self,
        request: Request,
        response: Response,
        session: PublisherSession,
        description: SessionDescription,
        tracks: list[AnnouncedTrack],
        keys: dict[int, MasterKey],
    ) -> None:
        """One ``KeyMgmt`` per MIKEY track, in SDP order, with our key for the RTCP we send it:
        GStreamer's rtspclientsink reads the ANNOUNCE reply's, the i-th for its i-th stream (as
        gst-rtsp-server sends them); the SETUP reply repeats the track's."""
        feedback = session.feedback
        assert feedback is not None
        controls = {t.index: t.control for t in tracks}
        ntp = unix_to_ntp(time.time())
        for index in mikey_sections(description):
            if index not in controls:
                continue
            announced = keys.get(index)
            ours = feedback.our_key(index, *([announced.suite] if announced else []))
            uri = f"{request.uri.rstrip('/')}/{controls[index]}"
            response.headers.add("KeyMgmt", format_key_mgmt(uri, ours.mikey(ntp)))

    def setup_record(self, client: Client, request: Request, session: PublisherSession) -> Reply:
        live = session.publishing
        full = request_path(request.uri)
        control = full[len(live.name) :].lstrip("/") if full.startswith(live.name) else full
        track = live.track_by_control(control) or live.track_by_control(full)
        if track is None:
            raise RtspError(404, f"the announced SDP has no track {control!r}")
        header = request.headers.get("Transport")
        if not header:
            raise RtspError(461, "SETUP without a Transport header")
        session.rtsp.check("SETUP")
        ports = self._udp_ports()
        facts = TransportFacts(secure=client.secure, encryption=self._encryption(live.name))
        offer = choose_record_transport(parse_transport(header), udp=ports is not None, facts=facts)
        savp = offer.profile.upper() in SRTP_PROFILES
        told = self._publisher_key(request, session, track.index, savp, client.secure)
        if offer.lower_transport == "TCP":
            used = self._routes.used_channels(client, besides=(session.id, track.index))
            channels = offer.interleaved or free_channels(used)
            reply = TransportSpec(
                profile=offer.profile.upper(),
                lower_transport="TCP",
                cast="unicast",
                interleaved=channels,
                mode="RECORD",
            )
            session.rtsp.setup(TrackSetup(track.index, control, reply))
            self._routes.forget_track(session.id, track.index)
            self._routes.add_channel(
                client, channels[0], Route(session.id, track.index, False, publisher=True)
            )
            self._routes.add_channel(
                client, channels[1], Route(session.id, track.index, True, publisher=True)
            )
            session.connection = client
            if session.feedback is not None:
                session.feedback.route(track.index, ChannelBack(channels[1]))
            how = f"TCP interleaved {channels[0]}-{channels[1]}"
        else:
            assert ports is not None and offer.client_port is not None
            host = client.peer[0]
            reply = TransportSpec(
                profile=offer.profile.upper(),
                lower_transport="UDP",
                cast="unicast",
                client_port=offer.client_port,
                server_port=ports,
                mode="RECORD",
            )
            session.rtsp.setup(TrackSetup(track.index, control, reply))
            self._routes.forget_track(session.id, track.index)
            # only from the ports negotiated here: anything else sent to our ports is dropped
            self._routes.add_udp(
                (host, offer.client_port[0]), Route(session.id, track.index, False, publisher=True)
            )
            self._routes.add_udp(
                (host, offer.client_port[1]), Route(session.id, track.index, True, publisher=True)
            )
            if session.feedback is not None:
                session.feedback.route(track.index, UdpBack((host, offer.client_port[1])))
            how = f"UDP {host}:{offer.client_port[0]}-{offer.client_port[1]}"
        if session.srtp is not None and track.index in session.srtp.inbound:
            how += f" SRTP {session.srtp.inbound[track.index].key.suite.name}"
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
        response.headers["Session"] = session.rtsp.session_header
        if told is not None:  # RFC 4567: our key for what we send this track (RTCP), naming our SSRC
            response.headers["KeyMgmt"] = format_key_mgmt(request.uri, told.mikey(unix_to_ntp(time.time())))
        return response, None

    def _request_keyframe(self, session: PublisherSession) -> None:
        """A viewer asked for a keyframe: RTCP PLI to the publisher, the way its RTCP comes."""
        if session.feedback is None:
            return
        for pli in session.feedback.request(self._clock()):
            data: bytes | None = pli.packet
            if session.srtp is not None:  # an SRTP publisher drops plain RTCP
                ours = session.feedback.key_for(pli.index)
                data = session.srtp.rtcp_to_publisher(pli.index, pli.packet, ours)
                if data is None:
                    continue
            if isinstance(pli.way, ChannelBack):
                connection = session.connection
                if connection is not None and not connection.is_closing:
                    connection.write_bytes(bytes(InterleavedFrame(pli.way.channel, data)))
            elif self._send_rtcp is not None:
                self._send_rtcp(data, pli.way.address)
            log.debug("%s: PLI to the publisher of track %d", session.label, pli.index)

    def _encryption(self, path: str) -> str:
        return self._config.encryption_for(path)

    def _announced_keys(
        self, client: Client, path: str, description: SessionDescription
    ) -> dict[int, MasterKey]:
        """The publisher's SRTP keys in its SDP: only over RTSPS, where the path offers encryption."""
        try:
            keys = announced_keys(description)
        except AnnouncedKeyError as exc:
            raise RtspError(466, f"announced SRTP keys: {exc}") from None
        if keys and not client.secure:
            raise RtspError(403, "SRTP keys in an ANNOUNCE over plain RTSP are refused (use rtsps://)")
        if keys and self._encryption(path) == "no":
            raise RtspError(461, f"{path!r} does not offer SRTP (encryption = no)")
        return keys

    def _publisher_key(
        self, request: Request, session: PublisherSession, index: int, savp: bool, secure: bool
    ) -> TrackKey | None:
        """The key a publisher's SETUP gives in ``KeyMgmt`` (GStreamer's rtspclientsink), if any;
        an RTP/SAVP track needs one, from there or from the ANNOUNCE. A track with a key is
        SRTP whatever profile its SETUP names (the SDP said so). Returns our key for the track
        when the publisher speaks MIKEY (told in the ANNOUNCE reply, or now): it goes in the reply."""
        told = session.feedback.keys.get(index) if session.feedback is not None else None
        if "KeyMgmt" in request.headers:
            try:
                key = client_key(request.headers["KeyMgmt"])
            except MikeyError as exc:
                raise RtspError(466, f"unusable KeyMgmt: {exc}") from None
            if session.srtp is None:
                session.srtp = SessionSrtp()
            session.srtp.receive_with(index, key)
            if session.feedback is not None and secure:  # our key never travels over plain RTSP
                told = session.feedback.our_key(index, key.suite)
        has_key = session.srtp is not None and index in session.srtp.inbound
        if savp and not has_key:
            raise RtspError(466, "RTP/SAVP publishing needs the publisher's key (KeyMgmt or the ANNOUNCE)")
        return told if has_key else None

    async def record(self, client: Client, request: Request) -> Reply:
        session = session_of(self._sessions, request, client, self._clock, required=True)
        assert session is not None
        session.rtsp.check("RECORD")  # 455: without ANNOUNCE, before SETUP
        assert isinstance(session, PublisherSession)
        live = session.publishing
        if self._paths.busy(live.name, self._alive, besides=live):
            raise RtspError(403, f"{live.name!r} is already being published by another client")
        if GoOnline() in session.rtsp.record():
            log.info("%s: session %s RECORD: %s is live", session.label, session.id, live.name)
            self._paths.go_online(live)
        response = Response(200)
        response.headers["Session"] = session.rtsp.session_header
        return response, None

    def pause(self, session: PublisherSession) -> None:
        """A publisher's PAUSE stops its stream: readers get BYE and the path goes offline at once
        (GStreamer's rtspclientsink pauses at end of stream and stays connected). RECORD resumes."""
        self._paths.remove_live(session.publishing, f"{session.label} PAUSE")

    def unpublish(self, session: PublisherSession) -> None:
        """The publisher's session ended: its path goes offline (its routes are forgotten with it)."""
        self._routes.forget_session(session.id)
        self._paths.remove_live(session.publishing, session.label)
        self._paths.release(session.publishing.name, session.id)
        if self._claims is not None:
            self._claims.release(session.publishing.name, session.id)
