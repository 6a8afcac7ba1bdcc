"""Requests of players (and the ones every session shares): DESCRIBE, SETUP, PLAY, PAUSE, TEARDOWN,
GET_PARAMETER, SET_PARAMETER. The rules come from :mod:`streamd.rtsp.server_session`; this module
performs what they decide: sinks, routes, playback, live readers, multicast membership."""

from __future__ import annotations

import logging
import time
import weakref
from dataclasses import dataclass, replace
from fractions import Fraction

from media.unit_cache import UnitCache
from sdp import write as write_sdp
from streamd.auth.context import current_user
from streamd.config import ServerConfig
from streamd.handlers.common import (
    Clock,
    PathResolver,
    Reply,
    SessionEnder,
    Unpublisher,
    session_of,
)
from streamd.live.multicast import MulticastService, MulticastSink
from streamd.live.reader import LiveReader
from streamd.playback import Binding, Playback, PlayRequest
from streamd.routing import PacketRoutes, Route
from streamd.rtp.clock import unix_to_ntp
from streamd.rtp.outgoing import OutgoingStream
from streamd.rtp.pacing import PacingSettings
from streamd.rtsp.errors import RtspError
from streamd.rtsp.headers import TransportSpec, format_npt, format_transport, parse_transport
from streamd.rtsp.headers.rate import format_rate
from streamd.rtsp.message import Request, Response
from streamd.rtsp.parameters import parameter_names, parameter_values
from streamd.rtsp.server_session import (
    EndSession,
    GoOffline,
    PausePlayback,
    PlayFacts,
    PlayParams,
    RemoveTrack,
    RtspServerSession,
    TrackSetup,
    TransportFacts,
    check_destination,
    choose_transport,
    get_parameters,
    pick_channels,
    play_params,
    range_header,
    rate_headers,
    rtp_info_header,
    session_parameters,
    set_parameters,
    uses_srtp,
)
from streamd.rtsp.transitions import PUBLIC_METHODS, State
from streamd.rtsp.url import base_url, request_path, split_control
from streamd.server_session import Client, PlayerSession, PublisherSession, ServerSession
from streamd.sessions import SessionRegistry
from streamd.srtp.context import Protector
from streamd.srtp.mikey import MikeyError, format_key_mgmt
from streamd.srtp.offer import OfferBook, TrackKey, add_keys_to_sdp
from streamd.srtp.session import SessionSrtp, client_key
from streamd.srtp.sink import protect_sink
from streamd.transport.interleaved import InterleavedSink
from streamd.transport.udp import UdpPair, UdpSink

log = logging.getLogger("streamd")


@dataclass
class PlayerContext:
    """The collaborators of the player handlers."""

    config: ServerConfig
    sessions: SessionRegistry
    routes: PacketRoutes
    paths: PathResolver
    multicast: MulticastService
    ender: SessionEnder
    publishers: Unpublisher
    udp: UdpPair | None
    unit_cache: UnitCache
    cname_host: str
    server_header: str
    clock: Clock


class PlayerHandlers:
    def __init__(self, context: PlayerContext) -> None:
        self.c = context
        self._offers: weakref.WeakKeyDictionary[Client, OfferBook] = weakref.WeakKeyDictionary()

    def encryption(self, path: str) -> str:
        """The path's encryption policy ("no", "optional", "strict")."""
        return self.c.config.encryption_for(path)

    @property
    def timeout(self) -> int:
        return max(self.c.config.session_timeout, self.c.config.min_session_timeout)

    def _session(self, request: Request, client: Client, *, required: bool) -> ServerSession | None:
        return session_of(self.c.sessions, request, client, self.c.clock, required=required)

    # --- OPTIONS, DESCRIBE ------------------------------------------------------------------

    async def options(self, client: Client, request: Request) -> Reply:
        if "Session" in request.headers:
            self._session(request, client, required=True)
        response = Response(200)
        response.headers["Public"] = ", ".join(PUBLIC_METHODS)
        return response, None

    async def describe(self, client: Client, request: Request) -> Reply:
        path, control = split_control(request_path(request.uri))
        if control is not None:
            raise RtspError(404, "DESCRIBE names a track, not a presentation")
        resolved = await self.c.paths.resolve(path)
        presentation = resolved.presentation
        if client.secure and self.encryption(path) != "no":
            # SRTP offered both ways clients read keys: SDES (ffmpeg) and MIKEY (GStreamer, live555)
            description = presentation.session_description(client.local[0])
            indexes = [t.track.index for t in presentation.tracks]
            offer = self._offers.setdefault(client, OfferBook()).offer(path, indexes)
            add_keys_to_sdp(description, offer, indexes, unix_to_ntp(time.time()))
            body = write_sdp(description).encode()
        else:
            body = presentation.sdp(client.local[0]).encode()
        response = Response(200, body=body)
        response.headers["Content-Type"] = "application/sdp"
        response.headers["Content-Base"] = base_url(request.uri)
        log.info("%s %s: DESCRIBE (%d tracks)", client.label, path, len(resolved.presentation.tracks))
        return response, None

    # --- SETUP ------------------------------------------------------------------------------

    def transport_facts(self, live: bool, client: Client | None = None, path: str = "") -> TransportFacts:
        refusal = "UDP is disabled" if self.c.udp is None else self.c.multicast.refusal(live)
        book = self._offers.get(client) if client is not None else None
        return TransportFacts(
            tcp=self.c.config.tcp,
            udp=self.c.udp is not None,
            multicast_refusal=refusal,
            secure=client is not None and client.secure,
            encryption=self.encryption(path),
            keys_offered=book is not None and book.has(path),
        )

    async def setup(self, client: Client, request: Request, session: ServerSession | None) -> Reply:
        assert session is None or isinstance(session, PlayerSession)
        path, control = split_control(request_path(request.uri))
        if session is not None and session.rtsp.path != path:
            raise RtspError(459, f"session {session.id} is for {session.rtsp.path!r}, not {path!r}")
        if session is not None:
            session.rtsp.check("SETUP")  # 455 while playing
        resolved = session.resolved if session is not None else await self.c.paths.resolve(path)
        presentation = resolved.presentation
        if control is None:
            if len(presentation.tracks) != 1:
                raise RtspError(459, "SETUP must name a track (trackID=N) of a multi-track presentation")
            streamable = presentation.tracks[0]
        else:
            found = presentation.track_by_control(control)
            if found is None:
                raise RtspError(404, f"{path!r} has no streamable track {control!r}")
            streamable = found
        header = request.headers.get("Transport")
        if not header:
            raise RtspError(461, "SETUP without a Transport header")
        is_live = presentation.info.format_name == "live"
        offers = parse_transport(header)
        facts = self.transport_facts(is_live, client, path)
        if session is not None and session.srtp is not None:
            facts = replace(facts, keys_offered=True)  # the session's keys bind its later tracks too
        wanted = choose_transport(offers, session.rtsp if session else None, facts)
        srtp = uses_srtp(wanted, facts)
        if wanted.cast == "multicast" and srtp != (self.encryption(path) != "no"):
            how = "SRTP: ask RTP/SAVP over rtsps://" if not srtp else "plain RTP (encryption = no)"
            raise RtspError(461, f"this path's multicast group is sent as {how}")
        their_key = None
        if srtp and "KeyMgmt" in request.headers:
            try:
                their_key = client_key(request.headers["KeyMgmt"])
            except MikeyError as exc:
                raise RtspError(466, f"unusable KeyMgmt: {exc}") from None
        if session is None:
            self.c.sessions.check_new_session(client)
            session = PlayerSession(
                rtsp=RtspServerSession(path, self.timeout),
                resolved=resolved,
                client_host=client.peer[0],
                label=f"{client.label} {path}",
                owner=client,
                user=current_user.get(),
                live=self.c.paths.live.get(path) if is_live else None,
            )
        index = streamable.track.index
        previous = session.bindings.get(index)
        if previous is None and session.playback is not None:
            raise RtspError(455, "cannot add a track to a session that has played; start a new session")
        if srtp and session.srtp is None:
            book = self._offers.get(client)
            offered = book.take(path) if book is not None else None
            session.srtp = SessionSrtp(offered) if offered is not None else SessionSrtp()
        elif not srtp and session.srtp is not None:
            raise RtspError(461, "this session's tracks travel as SRTP: all of them must")
        track_key = session.srtp.offer.key_for(index) if session.srtp is not None else None
        stream = (
            previous.stream
            if previous is not None
            else OutgoingStream(
                streamable.payload_format,
                streamable.track.time_base,
                cname=f"streamd-{session.id}@{self.c.cname_host}",
                **({"ssrc": track_key.ssrc} if track_key is not None else {}),
            )
        )
        if wanted.cast == "multicast" and session.live is not None:
            await self.c.multicast.prepare(session.live)  # worker processes: the whole server's group
        reply, sink = self._make_sink(wanted, client, session, index, stream)
        if isinstance(sink, MulticastSink):
            stream = sink.sender.tracks[index].stream  # the shared send's, not one of our own
            session.rtsp.multicast = True
            group_key = sink.sender.group_key()
            if group_key is not None:  # the group's key and SSRC, in the SETUP reply's KeyMgmt
                track_key = TrackKey(group_key, stream.ssrc)
        elif track_key is not None and session.srtp is not None:
            sink = protect_sink(sink, Protector(track_key.key))
            reply.profile = wanted.profile.upper()
            if their_key is not None:
                session.srtp.receive_with(index, their_key)
        session.rtsp.setup(TrackSetup(index, streamable.control, reply))
        if session.id not in self.c.sessions:
            self.c.sessions.add(session)
        if previous is not None:
            self.c.routes.forget_track(session.id, index)
        session.bindings[index] = Binding(streamable, stream, sink)
        inner = getattr(sink, "inner", sink)
        if isinstance(inner, UdpSink):
            self.c.routes.add_udp(inner.rtcp_addr, Route(session.id, index, True))
        else:
            session.connection = client
            if isinstance(inner, InterleavedSink):
                self.c.routes.add_channel(client, inner.rtp_channel, Route(session.id, index, False))
                self.c.routes.add_channel(client, inner.rtcp_channel, Route(session.id, index, True))
        client.sessions.add(session.id)
        session.last_activity = self.c.clock()
        log.info(
            "%s: session %s SETUP %s (%s) over %s",
            session.label,
            session.id,
            streamable.control,
            streamable.track.codec,
            sink.description,
        )
        response = Response(200)
        response.headers["Transport"] = format_transport(reply)
        response.headers["Session"] = session.rtsp.session_header
        if track_key is not None:  # our key again, for a client that did not DESCRIBE on this connection
            mikey = track_key.mikey(unix_to_ntp(time.time()))
            response.headers["KeyMgmt"] = format_key_mgmt(request.uri, mikey)
        return response, None

    def _make_sink(
        self,
        offer: TransportSpec,
        client: Client,
        session: PlayerSession,
        index: int,
        stream: OutgoingStream,
    ) -> tuple[TransportSpec, UdpSink | InterleavedSink | MulticastSink]:
        if offer.cast == "multicast" and offer.lower_transport == "UDP":
            if session.live is None:
                raise RtspError(404, f"{session.rtsp.path!r} went offline")
            return self.c.multicast.setup(session.live, index, session.id, client.peer[0], offer)
        if offer.lower_transport == "TCP":
            used = self.c.routes.used_channels(client, besides=(session.id, index))
            channels = pick_channels(offer.interleaved, used)
            reply = TransportSpec(
                profile="RTP/AVP",
                lower_transport="TCP",
                cast="unicast",
                interleaved=channels,
                ssrc=stream.ssrc,
            )
            return reply, InterleavedSink(client, channels[0], channels[1])
        udp = self.c.udp
        assert udp is not None and offer.client_port is not None
        check_destination(offer, client.peer[0])
        rtp_port, rtcp_port = offer.client_port
        reply = TransportSpec(
            profile="RTP/AVP",
            lower_transport="UDP",
            cast="unicast",
            client_port=(rtp_port, rtcp_port),
            server_port=(udp.rtp_port, udp.rtcp_port),
            ssrc=stream.ssrc,
        )
        return reply, UdpSink(udp, client.peer[0], rtp_port, rtcp_port)

    # --- PLAY -------------------------------------------------------------------------------

    async def play(self, client: Client, request: Request) -> Reply:
        session = self._session(request, client, required=True)
        assert session is not None
        if isinstance(session, PublisherSession):
            session.rtsp.check("PLAY")  # always 455: a publisher's session records
        assert isinstance(session, PlayerSession)
        if session.live is not None:
            return self._play_live(request, session)
        presentation = session.resolved.presentation
        facts = PlayFacts(
            presentation.duration,
            has_video=any(b.is_video for b in session.bindings.values()),
            whole_mpegts=presentation.mode == "mpegts",
        )
        params = play_params(request.headers, facts)
        was_playing = session.rtsp.state is State.PLAYING
        playback = session.playback
        current = (playback.scale, playback.speed) if playback is not None and was_playing else None
        actions = session.rtsp.play(params, current)
        if playback is None:
            playback = session.playback = Playback(
                session.resolved.file,
                presentation,
                session.bindings,
                label=session.label,
                on_end=lambda reason, s=session: _playback_ended(s, reason),
                unit_cache=self.c.unit_cache,
                settings=PacingSettings.from_config(self.c.config),
            )
        if not actions:  # a repeated PLAY without Range: a keep-alive for some clients
            return self._play_response(request, session, playback.npt, None, None), None
        if was_playing:
            await playback.pause()
        try:
            info = await playback.prepare(PlayRequest(params.start, params.end, params.scale, params.speed))
        except Exception as exc:
            session.rtsp.play_failed()
            raise RtspError(500, f"cannot read {presentation.name!r}: {exc}") from exc
        log.info(
            "%s: session %s PLAY from npt=%s%s%s%s",
            session.label,
            session.id,
            format_npt(info.start),
            f" to {format_npt(info.end)}" if info.end is not None else "",
            f" scale {format_rate(params.scale)}" if params.scale != 1 else "",
            f" speed {format_rate(params.speed)}" if params.speed != 1 else "",
        )
        response = self._play_response(request, session, info.start, info.end, info.rtp_info)
        for name, value in rate_headers(request.headers, params).items():
            response.headers[name] = value
        return response, playback.start

    def _play_response(
        self,
        request: Request,
        session: PlayerSession,
        start: Fraction,
        end: Fraction | None,
        rtp_info: dict[int, tuple[int, int]] | None,
    ) -> Response:
        response = Response(200)
        response.headers["Session"] = session.rtsp.session_header
        response.headers["Range"] = range_header(start, end, session.resolved.presentation.duration)
        if rtp_info:
            tracks = [
                (session.bindings[i].streamable.control, seq, rtptime)
                for i, (seq, rtptime) in rtp_info.items()
                if i in session.bindings
            ]
            response.headers["RTP-Info"] = rtp_info_header(request.uri, tracks)
        return response

    def _play_live(self, request: Request, session: PlayerSession) -> Reply:
        live = session.live
        assert live is not None
        if not live.online or self.c.paths.live.get(live.name) is not live:
            raise RtspError(404, f"{live.name!r} went offline")
        session.rtsp.play(PlayParams(), None)
        multicast = self.c.multicast.is_member(session.id)
        if session.live_reader is None and not multicast:
            session.live_reader = LiveReader(live, session.bindings, session.label)
        response = Response(200)
        response.headers["Session"] = session.rtsp.session_header
        response.headers["Range"] = "npt=now-"
        tracks = [(b.streamable.control, b.stream.next_seq, None) for b in session.bindings.values()]
        response.headers["RTP-Info"] = rtp_info_header(request.uri, tracks)
        if multicast:
            try:
                self.c.multicast.play(session.id)  # the client joined the group at SETUP already
            except RtspError:
                session.rtsp.play_failed()
                raise
        log.info("%s: session %s PLAY live%s", session.label, session.id, " (multicast)" if multicast else "")
        if multicast:
            return response, None
        assert session.live_reader is not None
        return response, session.live_reader.attach

    # --- PAUSE, TEARDOWN --------------------------------------------------------------------

    async def pause(self, client: Client, request: Request) -> Reply:
        session = self._session(request, client, required=True)
        assert session is not None
        actions = session.rtsp.pause()
        position = Fraction(0)
        if isinstance(session, PlayerSession) and session.live_reader is not None:
            session.live_reader.detach(bye=False)
            session.live_reader = None
        self.c.multicast.pause(session.id)
        if isinstance(session, PublisherSession) and GoOffline() in actions:
            self.c.publishers.pause(session)
        if isinstance(session, PlayerSession) and session.playback is not None:
            playing = PausePlayback() in actions
            position = await session.playback.pause() if playing else session.playback.npt
        log.info("%s: session %s PAUSE at npt=%s", session.label, session.id, format_npt(position))
        response = Response(200)
        response.headers["Session"] = session.rtsp.session_header
        response.headers["Range"] = f"npt={format_npt(position)}-"
        return response, None

    async def teardown(self, client: Client, request: Request) -> Reply:
        session = self._session(request, client, required=True)
        assert session is not None
        _, control = split_control(request_path(request.uri))
        bindings = session.bindings if isinstance(session, PlayerSession) else {}
        track = None
        if control is not None:
            found = session.resolved.presentation.track_by_control(control)
            track = found.track.index if found else None
            if track is None or track not in bindings:
                raise RtspError(455, f"{control} is not set up in session {session.id}")
        response = Response(200)
        for action in session.rtsp.teardown(track):
            if isinstance(action, RemoveTrack):
                assert isinstance(session, PlayerSession)
                if session.playback is not None:
                    session.playback.remove_track(action.index)
                else:
                    bindings.pop(action.index)
                self.c.routes.forget_track(session.id, action.index)
                log.info("%s: session %s TEARDOWN %s", session.label, session.id, control)
                response.headers["Session"] = session.rtsp.session_header
            elif isinstance(action, EndSession):
                await self.c.ender.end(session, action.reason, send_bye=True)
        return response, None

    # --- GET_PARAMETER, SET_PARAMETER --------------------------------------------------------

    async def get_parameter(self, client: Client, request: Request) -> Reply:
        session = self._session(request, client, required="Session" in request.headers)
        names = parameter_names(request.body)
        response = Response(200)
        if session is not None:
            response.headers["Session"] = session.rtsp.session_header
        body = get_parameters(names, self._parameters(session)) if names else None
        if body is not None:
            response.body = body
            response.headers["Content-Type"] = "text/parameters"
        return response, None

    async def set_parameter(self, client: Client, request: Request) -> Reply:
        session = self._session(request, client, required="Session" in request.headers)
        set_parameters(parameter_values(request.body), self._parameters(session))
        response = Response(200)
        if session is not None:
            response.headers["Session"] = session.rtsp.session_header
        return response, None

    def _parameters(self, session: ServerSession | None) -> dict[str, str]:
        """What GET_PARAMETER can report (all read-only; PLAY changes position, scale, speed)."""
        if session is None:
            return {"server": self.c.server_header, "sessions": str(len(self.c.sessions))}
        playback = session.playback if isinstance(session, PlayerSession) else None
        return session_parameters(
            session.rtsp,
            playback.npt if playback else Fraction(0),
            session.resolved.presentation.duration,
            playback.scale if playback else Fraction(1),
            playback.speed if playback else Fraction(1),
        )


def _playback_ended(session: PlayerSession, reason: str) -> None:
    log.info("%s: session %s playback ended: %s", session.label, session.id, reason)
