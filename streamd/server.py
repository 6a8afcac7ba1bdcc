"""The RTSP server: listens, keeps sessions, and turns requests into responses and playback.

The protocol work happens below (``streamd.rtsp`` parses and keeps session state,
``streamd.rtp`` builds packets); this module is the I/O shell that ties them to sockets,
timers and files, and the one place where an ``RtspError`` becomes a response and a log line.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections import Counter
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

from aiortc.rtp import RtcpRrPacket, RtcpSrPacket

from media.unit_cache import UnitCache
from streamd.catalog import Catalog, Resolved
from streamd.config import ServerConfig
from streamd.connection import RtspConnection
from streamd.limits import Admission
from streamd.live.hub import LivePath
from streamd.live.live_presentation import live_presentation
from streamd.live.multicast import MulticastService, MulticastSink
from streamd.live.reader import LiveReader
from streamd.live.recorder import Recordings
from streamd.live.relay import Relay, RelayHooks
from streamd.playback import Binding, Playback, PlayRequest
from streamd.publishing import Publishing
from streamd.relocator import Relocator
from streamd.rtp.clock import unix_to_ntp
from streamd.rtp.outgoing import OutgoingStream
from streamd.rtp.rtcp import parse_compound
from streamd.rtsp.errors import RtspError
from streamd.rtsp.headers import (
    RtpInfoEntry,
    TransportSpec,
    format_npt,
    format_rtp_info,
    format_session,
    format_transport,
    parse_range,
    parse_session,
    parse_transport,
)
from streamd.rtsp.headers.rate import format_rate, parse_rate
from streamd.rtsp.message import InterleavedFrame, Request, Response
from streamd.rtsp.parameters import format_parameters, parameter_names, parameter_values
from streamd.rtsp.session import RtspSession, State, TrackSetup
from streamd.rtsp.url import base_url, request_path, split_control
from streamd.server_session import ServerSession, session_stats
from streamd.transport.interleaved import InterleavedSink
from streamd.transport.multicast import multicast_interface
from streamd.transport.udp import Address, UdpPair, UdpSink
from streamd.version import __version__

log = logging.getLogger("streamd")

PUBLIC_METHODS = (
    "OPTIONS",
    "DESCRIBE",
    "SETUP",
    "PLAY",
    "PAUSE",
    "TEARDOWN",
    "GET_PARAMETER",
    "SET_PARAMETER",
    "ANNOUNCE",
    "RECORD",
)
MAX_SCALE = Fraction(64)
MAX_SPEED = Fraction(16)
REAP_INTERVAL = 1.0
RELAY_START_TIMEOUT = 10.0  # a reader's DESCRIBE waits this long for a relayed upstream to play
AfterResponse = Callable[[], None] | None


class RtspServer:
    def __init__(self, config: ServerConfig, catalog: Catalog) -> None:
        self.config = config
        self.catalog = catalog
        self.server_header = f"streamd/{__version__}"
        self.sessions: dict[str, ServerSession] = {}
        self.connections: set[RtspConnection] = set()
        self.connection_limits = Admission(
            config.max_connections, config.max_connections_per_client, "connections"
        )
        self.udp: UdpPair | None = None
        self._rtcp_routes: dict[Address, tuple[str, int]] = {}
        self.live: dict[str, LivePath] = {}
        self.relays: dict[str, Relay] = {}  # paths with a configured source, pulled on demand
        self.web_viewers: Counter[str] = Counter()  # browsers watching a live path over HTTP
        self.recordings = Recordings(config)  # live paths with record = true, written to files
        self.relocator = Relocator(self)  # redirects, moved paths, draining
        self.unit_cache = UnitCache()  # small files' access units, shared by their sessions
        self.publishing = Publishing(self)  # ANNOUNCE/RECORD and what publishers send
        self._servers: list[asyncio.AbstractServer] = []
        self._reaper: asyncio.Task[None] | None = None
        self._endings: set[asyncio.Task[None]] = set()  # sessions being wound down
        self.cname_host = socket.gethostname() or "streamd"
        self.multicast = MulticastService(
            config.multicast_spec(),
            multicast_interface(config.multicast_interface, config.host),
            lambda path: self.config.path_settings(path).multicast,
            self.cname_host,
        )
        # set by the HTTP side: takes over an RTSP-port connection whose first request is HTTP
        # (RTSP-over-HTTP tunnelling, or a browser pointed at the RTSP port)
        self.http_hand_over: Callable[..., None] | None = None

    # --- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        if self.config.udp:
            self.udp = UdpPair(self._rtcp_received, self.publishing.rtp_received)
            await self.udp.open(self.config.host, self.config.rtp_port)
        server = await loop.create_server(
            lambda: RtspConnection(self), self.config.host, self.config.rtsp_port, reuse_address=True
        )
        self._servers.append(server)
        self._reaper = loop.create_task(self._reap(), name="session reaper")

    @property
    def rtsp_port(self) -> int:
        return self._servers[0].sockets[0].getsockname()[1] if self._servers else self.config.rtsp_port

    async def stop(self) -> None:
        """Stop cleanly: every playing client gets RTCP BYE, then sockets close."""
        for server in self._servers:
            server.close()
        if self._reaper is not None:
            self._reaper.cancel()
        self.relocator.close()
        for session in list(self.sessions.values()):
            await self.end_session(session, "server shutting down", send_bye=True)
        await asyncio.gather(*self._endings, return_exceptions=True)  # failures: see _ended
        self.multicast.close()
        await asyncio.gather(*(relay.stop() for relay in self.relays.values()))
        for connection in list(self.connections):
            connection.close()
        await self.recordings.close()  # finish the files being written (MP4: the moov)
        for server in self._servers:
            await server.wait_closed()
        if self.udp is not None:
            await asyncio.sleep(0.05)  # let the BYE datagrams leave
            self.udp.close()

    # --- connections ------------------------------------------------------------------------

    def connection_opened(self, connection: RtspConnection) -> None:
        self.connections.add(connection)
        log.debug("%s: connected", connection.label)

    def connection_closed(self, connection: RtspConnection) -> None:
        self.connections.discard(connection)
        self.connection_limits.release(connection.peer[0])
        for session_id in list(connection.sessions):
            session = self.sessions.get(session_id)
            if session is not None and session.connection is connection:
                self._begin_ending(session, "connection closed", send_bye=False)
        log.debug("%s: disconnected", connection.label)

    # --- requests ---------------------------------------------------------------------------

    async def handle(self, connection: RtspConnection, request: Request) -> tuple[Response, AfterResponse]:
        """Answer one request; the only place an RtspError turns into a response."""
        cseq = request.cseq  # only a valid number is echoed, never the raw text
        try:
            if request.cseq is None:
                raise RtspError(400, "missing or invalid CSeq header")
            if request.version != "RTSP/1.0":
                raise RtspError(505, f"version {request.version!r} not supported (RTSP/1.0 only)")
            method = getattr(self, f"_on_{request.method.lower()}", None)
            if request.method not in PUBLIC_METHODS or method is None:
                raise RtspError(501, f"method {request.method!r} not implemented")
            redirect = self.relocator.moved(request)
            response, after = (redirect, None) if redirect else await method(connection, request)
        except RtspError as exc:
            log.warning(
                "%s: %s %s -> %d %s",
                connection.label,
                request.method,
                _short(request.uri),
                exc.status,
                exc.reason,
            )
            response, after = Response(exc.status), None
            if exc.status in (405, 501):
                response.headers["Public"] = ", ".join(PUBLIC_METHODS)
            if exc.body:
                response.body = exc.body.encode()
                response.headers["Content-Type"] = "text/plain; charset=utf-8"
        except Exception:
            log.exception("%s: %s %s failed", connection.label, request.method, _short(request.uri))
            response, after = Response(500), None
        if cseq is not None:
            response.headers["CSeq"] = str(cseq)
        response.headers["Server"] = self.server_header
        return response, after

    async def _on_options(
        self, connection: RtspConnection, request: Request
    ) -> tuple[Response, AfterResponse]:
        self._touch_optional(request)
        response = Response(200)
        response.headers["Public"] = ", ".join(PUBLIC_METHODS)
        return response, None

    async def _on_describe(
        self, connection: RtspConnection, request: Request
    ) -> tuple[Response, AfterResponse]:
        path, control = split_control(request_path(request.uri))
        if control is not None:
            raise RtspError(404, "DESCRIBE names a track, not a presentation")
        resolved = await self._resolve(path)
        body = resolved.presentation.sdp(connection.local[0]).encode()
        response = Response(200, body=body)
        response.headers["Content-Type"] = "application/sdp"
        response.headers["Content-Base"] = base_url(request.uri)
        log.info("%s %s: DESCRIBE (%d tracks)", connection.label, path, len(resolved.presentation.tracks))
        return response, None

    async def _on_setup(self, connection: RtspConnection, request: Request) -> tuple[Response, AfterResponse]:
        session = self.session_of(request, required=False)
        if session is not None and session.publishing is not None:
            return self.publishing.setup_record(connection, request, session)
        path, control = split_control(request_path(request.uri))
        if session is not None and session.rtsp.path != path:
            raise RtspError(459, f"session {session.id} is for {session.rtsp.path!r}, not {path!r}")
        if session is not None and session.rtsp.state is State.PLAYING:
            raise RtspError(455, "SETUP while playing; PAUSE first")
        resolved = session.resolved if session is not None else await self._resolve(path)
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
        is_live = resolved.presentation.info.format_name == "live"
        wanted = self._choose_transport(parse_transport(header), session, live=is_live)
        if session is None:
            session = ServerSession(
                RtspSession(path, self.config.session_timeout),
                resolved,
                connection.peer[0],
                f"{connection.label} {path}",
                live=self.live.get(path) if resolved.presentation.info.format_name == "live" else None,
            )
        index = streamable.track.index
        previous = session.bindings.get(index)
        if previous is None and session.playback is not None:
            raise RtspError(455, "cannot add a track to a session that has played; start a new session")
        stream = (
            previous.stream
            if previous is not None
            else OutgoingStream(
                streamable.payload_format,
                streamable.track.time_base,
                cname=f"streamd-{session.id}@{self.cname_host}",
            )
        )
        reply, sink = self._make_sink(wanted, connection, session, index, stream)
        if isinstance(sink, MulticastSink):
            stream = sink.sender.tracks[index].stream  # the shared send's, not one of our own
        session.rtsp.setup(
            TrackSetup(index, streamable.control, reply), lower_transport=reply.lower_transport
        )
        if session.id not in self.sessions:
            self.sessions[session.id] = session
        if previous is not None:
            self._forget_route(previous)
        session.bindings[index] = Binding(streamable, stream, sink)
        if isinstance(sink, UdpSink):
            self._rtcp_routes[sink.rtcp_addr] = (session.id, index)
        else:
            session.connection = connection
        connection.sessions.add(session.id)
        session.last_activity = asyncio.get_running_loop().time()
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
        response.headers["Session"] = format_session(session.id, self.config.session_timeout)
        return response, None

    def _choose_transport(
        self, offers: list[TransportSpec], session: ServerSession | None, *, live: bool = False
    ) -> TransportSpec:
        """The first offer we can honour; 461 tells clients to retry another way (UDP -> TCP)."""
        fixed = session.rtsp.lower_transport if session is not None else None
        multicast = session is not None and self.multicast.is_member(session.id)
        reasons = []
        for offer in offers:
            if offer.profile.upper() not in ("RTP/AVP",):
                reasons.append(f"profile {offer.profile} not supported")
                continue
            if offer.mode.upper() != "PLAY":
                reasons.append(f"mode {offer.mode} not supported")
                continue
            if fixed is not None and offer.lower_transport != fixed:
                reasons.append(f"session already uses {fixed}")
                continue
            if fixed is not None and multicast != (offer.cast == "multicast"):
                reasons.append(f"session already uses {'multi' if multicast else 'uni'}cast")
                continue
            if offer.lower_transport == "TCP":
                if self.config.tcp:
                    return offer
                reasons.append("TCP is disabled")
            elif offer.cast == "multicast":
                refusal = "UDP is disabled" if self.udp is None else self.multicast.refusal(live)
                if refusal is None:
                    return offer
                reasons.append(refusal)
            elif self.udp is None:
                reasons.append("UDP is disabled")
            elif offer.client_port is None:
                reasons.append("UDP without client_port")
            else:
                return offer
        raise RtspError(461, "; ".join(reasons) or "no usable transport")

    def _make_sink(
        self,
        offer: TransportSpec,
        connection: RtspConnection,
        session: ServerSession,
        index: int,
        stream: OutgoingStream,
    ) -> tuple[TransportSpec, UdpSink | InterleavedSink | MulticastSink]:
        if offer.cast == "multicast" and offer.lower_transport == "UDP":
            if session.live is None:
                raise RtspError(404, f"{session.rtsp.path!r} went offline")
            return self.multicast.setup(session.live, index, session.id, connection.peer[0], offer)
        if offer.lower_transport == "TCP":
            channels = offer.interleaved or self.free_channels(connection)
            in_use = {
                (b.sink.rtp_channel, b.sink.rtcp_channel)
                for sid in connection.sessions
                if (s := self.sessions.get(sid)) is not None
                for i, b in s.bindings.items()
                if isinstance(b.sink, InterleavedSink) and not (s is session and i == index)
            }
            if channels in in_use:
                channels = self.free_channels(connection)
            reply = TransportSpec(
                profile="RTP/AVP",
                lower_transport="TCP",
                cast="unicast",
                interleaved=channels,
                ssrc=stream.ssrc,
            )
            return reply, InterleavedSink(connection, channels[0], channels[1])
        assert self.udp is not None and offer.client_port is not None
        if offer.destination and offer.destination != connection.peer[0]:
            raise RtspError(
                403, f"destination {offer.destination} differs from the client's address; refused"
            )
        rtp_port, rtcp_port = offer.client_port
        reply = TransportSpec(
            profile="RTP/AVP",
            lower_transport="UDP",
            cast="unicast",
            client_port=(rtp_port, rtcp_port),
            server_port=(self.udp.rtp_port, self.udp.rtcp_port),
            ssrc=stream.ssrc,
        )
        return reply, UdpSink(self.udp, connection.peer[0], rtp_port, rtcp_port)

    def free_channels(self, connection: RtspConnection) -> tuple[int, int]:
        used = set()
        for sid in connection.sessions:
            s = self.sessions.get(sid)
            if s is None:
                continue
            for b in s.bindings.values():
                if isinstance(b.sink, InterleavedSink):
                    used.update((b.sink.rtp_channel, b.sink.rtcp_channel))
        channel = 0
        while channel in used or channel + 1 in used:
            channel += 2
        if channel > 254:
            raise RtspError(461, "no free interleaved channels on this connection")
        return channel, channel + 1

    async def _on_play(self, connection: RtspConnection, request: Request) -> tuple[Response, AfterResponse]:
        session = self.session_of(request, required=True)
        assert session is not None
        if session.live is not None:
            return self._play_live(request, session)
        presentation = session.resolved.presentation
        play = self._play_request(request, session)
        was_playing = session.rtsp.state is State.PLAYING
        session.rtsp.play()
        if session.playback is None:
            session.playback = Playback(
                session.resolved.file,
                presentation,
                session.bindings,
                label=session.label,
                on_end=lambda reason, s=session: self._playback_ended(s, reason),
                unit_cache=self.unit_cache,
            )
        playback = session.playback
        if was_playing:
            unchanged = (play.scale, play.speed) == (playback.scale, playback.speed)
            if play.start is None and play.end is None and unchanged:
                # a repeated PLAY without Range changes nothing (some clients use it as keep-alive)
                response = self._play_response(request, session, playback.npt, None, None)
                return response, None
            await playback.pause()
        try:
            info = await playback.prepare(play)
        except Exception as exc:
            session.rtsp.pause()
            raise RtspError(500, f"cannot read {presentation.name!r}: {exc}") from exc
        log.info(
            "%s: session %s PLAY from npt=%s%s%s%s",
            session.label,
            session.id,
            format_npt(info.start),
            f" to {format_npt(info.end)}" if info.end is not None else "",
            f" scale {format_rate(play.scale)}" if play.scale != 1 else "",
            f" speed {format_rate(play.speed)}" if play.speed != 1 else "",
        )
        response = self._play_response(request, session, info.start, info.end, info.rtp_info)
        if "Scale" in request.headers or play.scale != 1:
            response.headers["Scale"] = format_rate(play.scale)
        if "Speed" in request.headers or play.speed != 1:
            response.headers["Speed"] = format_rate(play.speed)
        return response, playback.start

    def _play_request(self, request: Request, session: ServerSession) -> PlayRequest:
        """Range, Scale and Speed of a PLAY, checked against the presentation (457/456 otherwise)."""
        duration = session.resolved.presentation.duration
        start = end = None
        if "Range" in request.headers:
            requested = parse_range(request.headers["Range"])
            if not requested.start_is_now and requested.start is not None:
                start = requested.start
                if start < 0 or (duration is not None and start > duration):
                    raise RtspError(
                        457, f"range start {format_npt(start)} outside 0-{format_npt(duration or 0)}"
                    )
            end = requested.end
            if end is not None:
                if start is not None and end <= start:
                    raise RtspError(457, "range end not after its start")
                if duration is not None and end >= duration:
                    end = None  # to the end anyway
        scale = Fraction(1)
        if "Scale" in request.headers:
            scale = parse_rate(request.headers["Scale"], "Scale")
            if scale <= 0:
                raise RtspError(
                    456, f"Scale {format_rate(scale)}: reverse or still playback is not supported"
                )
            if scale != 1 and session.resolved.presentation.mode == "mpegts":
                raise RtspError(456, "Scale other than 1 is not offered for a whole MPEG-TS")
            if scale != 1 and not any(b.is_video for b in session.bindings.values()):
                raise RtspError(456, "Scale other than 1 needs a video track (audio is not time-scaled)")
            scale = min(scale, MAX_SCALE)
        speed = Fraction(1)
        if "Speed" in request.headers:
            speed = parse_rate(request.headers["Speed"], "Speed")
            if speed <= 0:
                raise RtspError(456, f"Speed {format_rate(speed)} must be positive")
            speed = min(speed, MAX_SPEED)
        return PlayRequest(start, end, scale, speed)

    def _play_response(
        self,
        request: Request,
        session: ServerSession,
        start: Fraction,
        end: Fraction | None,
        rtp_info: dict[int, tuple[int, int]] | None,
    ) -> Response:
        response = Response(200)
        response.headers["Session"] = format_session(session.id, self.config.session_timeout)
        if end is None:
            end = session.resolved.presentation.duration
        response.headers["Range"] = f"npt={format_npt(start)}-{format_npt(end) if end else ''}"
        if rtp_info:
            base = _presentation_url(request.uri)
            entries = [
                RtpInfoEntry(f"{base}/{session.bindings[i].streamable.control}", seq, rtptime)
                for i, (seq, rtptime) in rtp_info.items()
                if i in session.bindings
            ]
            response.headers["RTP-Info"] = format_rtp_info(entries)
        return response

    async def _on_pause(self, connection: RtspConnection, request: Request) -> tuple[Response, AfterResponse]:
        session = self.session_of(request, required=True)
        assert session is not None
        was_playing = session.rtsp.pause()
        if session.live_reader is not None:
            session.live_reader.detach(bye=False)
            session.live_reader = None
        self.multicast.pause(session.id)
        if session.publishing is not None and was_playing:
            self.publishing.pause(session)
        position = Fraction(0)
        if session.playback is not None:
            position = await session.playback.pause() if was_playing else session.playback.npt
        log.info("%s: session %s PAUSE at npt=%s", session.label, session.id, format_npt(position))
        response = Response(200)
        response.headers["Session"] = format_session(session.id, self.config.session_timeout)
        response.headers["Range"] = f"npt={format_npt(position)}-"
        return response, None

    async def _on_teardown(
        self, connection: RtspConnection, request: Request
    ) -> tuple[Response, AfterResponse]:
        session = self.session_of(request, required=True)
        assert session is not None
        _, control = split_control(request_path(request.uri))
        track = None
        if control is not None:
            found = session.resolved.presentation.track_by_control(control)
            track = found.track.index if found else None
            if track is None or track not in session.bindings:
                raise RtspError(455, f"{control} is not set up in session {session.id}")
        response = Response(200)
        if track is not None and len(session.bindings) > 1:
            session.rtsp.teardown(track)
            binding = session.bindings[track]
            if session.playback is not None:
                session.playback.remove_track(track)
            else:
                session.bindings.pop(track)
            self._forget_route(binding)
            log.info("%s: session %s TEARDOWN %s", session.label, session.id, control)
            response.headers["Session"] = format_session(session.id, self.config.session_timeout)
            return response, None
        await self.end_session(session, "TEARDOWN", send_bye=True)
        return response, None

    async def _on_get_parameter(
        self, connection: RtspConnection, request: Request
    ) -> tuple[Response, AfterResponse]:
        session = self._touch_optional(request)
        names = parameter_names(request.body)
        response = Response(200)
        if session is not None:
            response.headers["Session"] = format_session(session.id, self.config.session_timeout)
        if not names:
            return response, None  # a keep-alive
        known = self._parameters(session)
        unknown = [n for n in names if n not in known]
        if unknown:
            raise RtspError(451, f"parameters not understood: {', '.join(unknown)[:200]}")
        response.body = format_parameters({n: known[n] for n in names})
        response.headers["Content-Type"] = "text/parameters"
        return response, None

    async def _on_set_parameter(
        self, connection: RtspConnection, request: Request
    ) -> tuple[Response, AfterResponse]:
        session = self._touch_optional(request)
        values = parameter_values(request.body)
        known = self._parameters(session)
        unknown = [n for n in values if n not in known]
        if unknown:
            raise RtspError(451, f"parameters not understood: {', '.join(unknown)[:200]}")
        if values:
            raise RtspError(458, f"read-only parameters: {', '.join(values)[:200]} (use PLAY to change them)")
        response = Response(200)
        if session is not None:
            response.headers["Session"] = format_session(session.id, self.config.session_timeout)
        return response, None

    def _parameters(self, session: ServerSession | None) -> dict[str, str]:
        """What GET_PARAMETER can report (all read-only; PLAY changes position, scale, speed)."""
        if session is None:
            return {"server": self.server_header, "sessions": str(len(self.sessions))}
        playback = session.playback
        duration = session.resolved.presentation.duration
        return {
            "position": format_npt(playback.npt if playback else Fraction(0)),
            "duration": format_npt(duration) if duration is not None else "live",
            "scale": format_rate(playback.scale if playback else Fraction(1)),
            "speed": format_rate(playback.speed if playback else Fraction(1)),
            "state": session.rtsp.state.value,
        }

    # --- sessions ---------------------------------------------------------------------------

    def session_of(self, request: Request, *, required: bool) -> ServerSession | None:
        header = request.headers.get("Session")
        if header is None:
            if required:
                raise RtspError(454, f"{request.method} without a Session header")
            return None
        session_id, _ = parse_session(header)
        session = self.sessions.get(session_id)
        if session is None:
            raise RtspError(454, f"no session {session_id!r} (expired or never existed)")
        session.last_activity = asyncio.get_running_loop().time()
        return session

    def _touch_optional(self, request: Request) -> ServerSession | None:
        if "Session" not in request.headers:
            return None
        return self.session_of(request, required=True)

    def _playback_ended(self, session: ServerSession, reason: str) -> None:
        log.info("%s: session %s playback ended: %s", session.label, session.id, reason)

    async def end_session(self, session: ServerSession, reason: str, *, send_bye: bool) -> None:
        """End a session and wait until it is wound down.

        The winding down runs in a task of its own, so it completes even when the caller is
        cancelled: a client that sends TEARDOWN and closes the connection at once cancels the
        request loop that is awaiting this.
        """
        ending = self._begin_ending(session, reason, send_bye=send_bye)
        if ending is not None:
            await asyncio.shield(ending)

    def _begin_ending(
        self, session: ServerSession, reason: str, *, send_bye: bool
    ) -> asyncio.Task[None] | None:
        if self.sessions.pop(session.id, None) is None:
            return None  # already ending
        ending = asyncio.get_running_loop().create_task(
            self._wind_down(session, reason, send_bye=send_bye), name=f"end {session.id}"
        )
        self._endings.add(ending)
        ending.add_done_callback(self._ended)
        return ending

    def _ended(self, ending: asyncio.Task[None]) -> None:
        self._endings.discard(ending)
        if not ending.cancelled() and ending.exception() is not None:
            log.error("%s failed", ending.get_name(), exc_info=ending.exception())

    async def _wind_down(self, session: ServerSession, reason: str, *, send_bye: bool) -> None:
        if session.live_reader is not None:
            session.live_reader.detach(bye=send_bye)
            session.live_reader = None
        self.multicast.leave(session.id)
        if session.publishing is not None:
            self.publishing.unpublish(session)
        if session.playback is not None:
            await session.playback.stop(send_bye=send_bye)
        for binding in session.bindings.values():
            self._forget_route(binding)
        for connection in self.connections:
            connection.sessions.discard(session.id)
        log.info(
            "%s: session %s ended (%s) after %.1f s; %s",
            session.label,
            session.id,
            reason,
            time.monotonic() - session.started,
            session_stats(session),
        )

    def _forget_route(self, binding: Binding) -> None:
        if isinstance(binding.sink, UdpSink):
            self._rtcp_routes.pop(binding.sink.rtcp_addr, None)

    async def _reap(self) -> None:
        """Tear down sessions that have heard nothing from their client for the timeout."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(REAP_INTERVAL)
            now = loop.time()
            for session in list(self.sessions.values()):
                if now - session.last_activity > session.rtsp.timeout:
                    age = self.multicast.report_age(session.id, session.client_host)
                    if age is not None and age < session.rtsp.timeout:
                        session.last_activity = now - age  # its player reports to the group
                        continue
                    await self.end_session(
                        session, f"timed out after {session.rtsp.timeout} s", send_bye=True
                    )
            for connection in list(self.connections):
                if not connection.sessions and now - connection.last_activity > self.config.session_timeout:
                    log.info("%s: idle for %d s; closing", connection.label, self.config.session_timeout)
                    connection.close()

    # --- live paths: publishing and reading -----------------------------------------------

    async def resolve(self, path: str) -> Resolved:
        """What a DESCRIBE of ``path`` would describe (the HTTP side shows the same)."""
        return await self._resolve(path)

    def live_paths(self) -> list[str]:
        """Paths being published right now, sorted."""
        return sorted(name for name, live in self.live.items() if live.online)

    async def _resolve(self, path: str) -> Resolved:
        """A live path being published, else a file (or the test stream) from the catalog."""
        live = self.live.get(path)
        if self.config.path_settings(path).source is not None:
            live = await self._pull(path)  # also tells the relay a reader is coming
        if live is not None and live.online:
            return Resolved(live_presentation(live), Path(""))
        on_disk = self.catalog.media_dir is not None and (self.catalog.media_dir / path).is_file()
        if (live is not None or self.config.accepts_publisher(path)) and not on_disk:
            raise RtspError(404, f"nothing is being published on {path!r} (offline)")
        return await self.catalog.resolve(path)

    async def _on_announce(
        self, connection: RtspConnection, request: Request
    ) -> tuple[Response, AfterResponse]:
        return await self.publishing.announce(connection, request)

    async def _on_record(
        self, connection: RtspConnection, request: Request
    ) -> tuple[Response, AfterResponse]:
        return await self.publishing.record(connection, request)

    def _play_live(self, request: Request, session: ServerSession) -> tuple[Response, AfterResponse]:
        live = session.live
        assert live is not None
        if not live.online or self.live.get(live.name) is not live:
            raise RtspError(404, f"{live.name!r} went offline")
        session.rtsp.play()
        multicast = self.multicast.is_member(session.id)
        if session.live_reader is None and not multicast:
            session.live_reader = LiveReader(live, session.bindings, session.label)
        response = Response(200)
        response.headers["Session"] = format_session(session.id, self.config.session_timeout)
        response.headers["Range"] = "npt=now-"
        base = _presentation_url(request.uri)
        entries = [
            RtpInfoEntry(f"{base}/{b.streamable.control}", b.stream.next_seq, None)
            for b in session.bindings.values()
        ]
        response.headers["RTP-Info"] = format_rtp_info(entries)
        if multicast:
            try:
                self.multicast.play(session.id)  # the client joined the group at SETUP already
            except RtspError:
                session.rtsp.pause()
                raise
        log.info("%s: session %s PLAY live%s", session.label, session.id, " (multicast)" if multicast else "")
        if multicast:
            return response, None
        assert session.live_reader is not None
        return response, session.live_reader.attach

    def add_live(self, live: LivePath) -> None:
        """Serve ``live``, fed from inside this process (``streamd.embed``); ValueError when busy."""
        existing = self.live.get(live.name)
        if existing is not None and existing is not live and existing.online:
            raise ValueError(f"{live.name!r} is already being published")
        live.online = True
        self.live[live.name] = live
        log.info("%s: %s is live", live.publisher, live.name)
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

    # --- relay and redirect ----------------------------------------------------------------

    async def _pull(self, path: str) -> LivePath:
        """The relayed path, online: its upstream is pulled now if it is not yet (503/404 if it fails)."""
        relay = self.relays.get(path)
        if relay is None:
            settings = self.config.path_settings(path)
            assert settings.source is not None
            hooks = RelayHooks(
                viewers=lambda: self.viewers(path),
                online=self.add_live,
                offline=lambda live, reason: self.remove_live(live, f"relay ({reason})"),
            )
            relay = Relay(
                path,
                settings.source,
                hooks,
                transport=settings.source_transport,
                close_after=settings.source_close_after,
                user_agent=self.server_header,
            )
            self.relays[path] = relay
        return await relay.wait_online(RELAY_START_TIMEOUT)

    # --- what the HTTP side shows ---------------------------------------------------------

    def snapshot(self) -> list[dict[str, object]]:
        """Every session as plain data (for the JSON API and metrics): who, what, how, how well."""
        now = time.monotonic()
        result: list[dict[str, object]] = []
        for session in self.sessions.values():
            result.append(
                {
                    "id": session.id,
                    "path": session.rtsp.path,
                    "client": session.client_host,
                    "transport": "UDP multicast"
                    if self.multicast.is_member(session.id)
                    else session.rtsp.lower_transport,
                    "state": session.rtsp.state.value,
                    "age_seconds": round(now - session.started, 3),
                    "position": float(session.playback.npt) if session.playback else 0.0,
                    "tracks": [
                        {
                            "control": b.streamable.control,
                            "codec": b.streamable.track.codec,
                            "ssrc": b.stream.ssrc,
                            "sink": b.sink.description,
                            "packets_sent": b.stream.packet_count,
                            "bytes_sent": b.stream.octet_count,
                            "rtcp": getattr(b.sink, "reception", b.stream.reception).as_dict(),
                        }
                        for b in session.bindings.values()
                    ],
                }
            )
        return result

    def viewers(self, path: str) -> int:
        """How many sessions are set up on ``path`` right now, and browsers watching it."""
        return sum(1 for s in self.sessions.values() if s.rtsp.path == path) + self.web_viewers[path]

    # --- RTCP from clients ------------------------------------------------------------------

    def _rtcp_received(self, data: bytes, addr: Address) -> None:
        publisher = self.publishing.routes.get(addr)
        if publisher is not None:
            self.publishing.data(publisher[0], publisher[1], True, data)
            return
        route = self._rtcp_routes.get(addr)
        if route is None:
            return
        session = self.sessions.get(route[0])
        if session is not None:
            self._apply_rtcp(session, data)

    def interleaved_received(self, connection: RtspConnection, frame: InterleavedFrame) -> None:
        for session_id in connection.sessions:
            session = self.sessions.get(session_id)
            if session is None:
                continue
            if session.publishing is not None and frame.channel in session.channels:
                index, is_rtcp = session.channels[frame.channel]
                self.publishing.data(session.id, index, is_rtcp, frame.payload)
                return
            for binding in session.bindings.values():
                sink = binding.sink
                if isinstance(sink, InterleavedSink) and frame.channel == sink.rtcp_channel:
                    self._apply_rtcp(session, frame.payload)
                    return

    def _apply_rtcp(self, session: ServerSession, data: bytes) -> None:
        session.last_activity = asyncio.get_running_loop().time()
        now_ntp = unix_to_ntp(time.time())
        streams = {b.stream.ssrc: b.stream for b in session.bindings.values()}
        for packet in parse_compound(data):
            if isinstance(packet, RtcpRrPacket | RtcpSrPacket):
                for report in packet.reports:
                    stream = streams.get(report.ssrc)
                    if stream is not None:
                        stream.reception.update(
                            report, stream.clock_rate, now_ntp, stream.sr_sent_at(report.lsr)
                        )


def _presentation_url(uri: str) -> str:
    base = base_url(uri).rstrip("/")
    _, control = split_control(base.split("://", 1)[-1])
    if control is not None:
        base = base[: -len(control) - 1]
    return base


def _short(uri: str) -> str:
    return uri if len(uri) <= 120 else uri[:117] + "..."
