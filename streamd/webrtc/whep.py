"""WHEP sessions: a browser's offer in, our answer out, then a reader of the path over SRTP.

A session is *pending* from its POST until ICE and DTLS complete; pending sessions are bounded
in total and per client address (503 beyond), and one that does not connect within
``webrtc_connect_timeout`` is freed with a log line. Once connected, a live path's viewer is a
``LiveReader`` of the hub (the path's payloads, packetized once, get this viewer's header) and a
file's viewer a ``Playback`` of its own; either writes into :class:`WebrtcSink`s. The session
ends on DELETE, when the peer goes away (ICE consent or DTLS closes), when the live path goes
offline, or when the file ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING

from media.errors import MediaError
from streamd.limits import Admission
from streamd.live.hub import LivePath
from streamd.live.live_presentation import live_presentation
from streamd.playback import Binding, Playback, PlayRequest
from streamd.rtp.outgoing import OutgoingStream
from streamd.rtp.pacing import PacingSettings
from streamd.rtp.payload.base import UnsupportedCodec
from streamd.rtp.presentation import Presentation, StreamableTrack
from streamd.rtsp.errors import RtspError
from streamd.webrtc.chunk_cache import DEFAULT_BYTES, FileChunks
from streamd.webrtc.convert import Converter, live_convertible, live_video_convertible, make_converter
from streamd.webrtc.file_control import FileControl
from streamd.webrtc.ice_ports import PortsExhausted
from streamd.webrtc.live_reader import WebrtcLiveReader
from streamd.webrtc.media import converted_video, for_browsers, live_sendables, sendable
from streamd.webrtc.nack import Histories
from streamd.webrtc.negotiate import Plan, answer_sdp, negotiate, parse_offer
from streamd.webrtc.peer import Peer, ice_servers
from streamd.webrtc.playback import WebrtcPlayback
from streamd.webrtc.port_range import PortPicker, parse_port_range
from streamd.webrtc.sink import Renumbered, WebrtcSink

if TYPE_CHECKING:
    from streamd.http.backend import HttpBackend

log = logging.getLogger(__name__)

KEYFRAME_REQUEST_INTERVAL = 1.0  # seconds: PLIs from viewers are passed on at most this often
WATCH_INTERVAL = 1.0  # how often a session checks that its live path is still the one online


@dataclass
class WhepSession:
    id: str
    path: str
    client: str
    peer: Peer
    plan: Plan
    sinks: dict[int, WebrtcSink]
    bindings: dict[int, Binding]
    live: LivePath | None = None
    presentation: Presentation | None = None
    file: Path | None = None
    connected: bool = False
    ended: bool = False
    reader: WebrtcLiveReader | None = None
    playback: Playback | None = None
    task: asyncio.Task[None] | None = None
    gone: asyncio.Event = field(default_factory=asyncio.Event)
    started: float = field(default_factory=time.monotonic)
    last_keyframe_request: float = 0.0
    pending: bool = True  # counted in the service's pending admission
    control: FileControl | None = None  # a file's data channel commands
    relayed: bool = False  # counted as a browser viewer of a relayed path (keeps it pulled)
    converted: dict[int, Converter] = field(default_factory=dict)  # shared converters it holds
    unconvertible: set[int] = field(default_factory=set)  # B-frames found late; no converter

    @property
    def label(self) -> str:
        return f"WHEP {self.id[:8]} ({self.client})"


class WhepService:
    """The server's WHEP sessions, their limits and timeouts."""

    def __init__(self, server: HttpBackend) -> None:
        self.server = server
        config = server.config
        self.connect_timeout = float(getattr(config, "webrtc_connect_timeout", 15.0))
        self.max_sessions = int(getattr(config, "webrtc_max_sessions", 1000))
        self.pending = Admission(
            int(getattr(config, "webrtc_max_pending", 64)),
            int(getattr(config, "webrtc_max_pending_per_client", 16)),
            "WebRTC sessions waiting for ICE",
        )
        self.servers = ice_servers(
            tuple(getattr(config, "webrtc_ice_servers", ())),
            getattr(config, "webrtc_turn_username", None),
            getattr(config, "webrtc_turn_password", None),
        )
        udp_ports = parse_port_range(getattr(config, "webrtc_udp_ports", None))
        self.ports = PortPicker(udp_ports) if udp_ports is not None else None
        self.cname = f"streamd@{getattr(server, 'cname_host', 'streamd')}"
        self.sessions: dict[str, WhepSession] = {}
        # (live path, track) -> its Opus converter and how many sessions hold it
        self.converters: dict[tuple[int, int], tuple[Converter, int]] = {}
        self.histories = Histories()  # live streams' packets for NACKs, one history per stream
        self.settings = PacingSettings.from_config(config) if hasattr(config, "send_slack") else None
        # files' conversions, chunk by chunk, shared by all their viewers (streamd/webrtc/chunk_cache.py)
        self.file_chunks = FileChunks(getattr(config, "webrtc_file_cache_bytes", DEFAULT_BYTES))

    # --- a POST --------------------------------------------------------------------------------

    async def create(self, path: str, offer_text: str, client: str) -> tuple[WhepSession, str]:
        """Negotiate and start connecting; the session and the SDP answer. RtspError on refusal."""
        offer = parse_offer(offer_text)
        live, presentation, file = await self._target(path)
        if live is not None:
            presentation = live_presentation(live)
            tracks = live_sendables(live)
        else:
            assert presentation is not None
            presentation = for_browsers(presentation)
            tracks = [sendable(t, live=False) for t in presentation.tracks]
        plan = negotiate(offer, tracks, data_channel=live is None)  # files take commands
        if len(self.sessions) >= self.max_sessions:
            raise RtspError(503, f"{self.max_sessions} WebRTC sessions already; try again later")
        refusal = self.pending.refusal(client)
        if refusal is not None:
            raise RtspError(503, refusal)
        self.pending.admit(client)
        peer = Peer(self.servers, self.ports)
        try:
            await peer.gather()
        except PortsExhausted as exc:
            log.warning("WHEP %s from %s refused: %s", path, client, exc)
            self.pending.release(client)
            await peer.close()
            raise RtspError(503, str(exc)) from None
        except BaseException:
            self.pending.release(client)
            await peer.close()
            raise
        session_id = secrets.token_urlsafe(24)
        sinks: dict[int, WebrtcSink] = {}
        bindings: dict[int, Binding] = {}
        streamables = {t.track.index: t for t in presentation.tracks}
        converted: dict[int, Converter] = {}
        for choice in plan.choices:
            streamable = streamables[choice.track]
            if live is not None and live_convertible(live.tracks[choice.track]):
                try:
                    converter = converted[choice.track] = self._converter(live, choice.track)
                except (MediaError, ValueError, UnsupportedCodec) as exc:
                    self._release_converters(converted)
                    self.pending.release(client)
                    await peer.close()
                    raise RtspError(415, f"track {choice.track} cannot be converted: {exc}") from None
                streamable = StreamableTrack(converter.track, converter.payload_format, streamable.control)
            video = streamable.track.kind == "video"
            sink = WebrtcSink(peer, choice.codec.payload_type, video=video)
            numbered = Renumbered(streamable.payload_format, choice.codec.payload_type)
            stream = OutgoingStream(numbered, streamable.track.time_base, self.cname)  # type: ignore[arg-type]
            sinks[choice.track] = sink
            bindings[choice.track] = Binding(streamable, stream, sink)
        session = WhepSession(session_id, path, client, peer, plan, sinks, bindings, live, presentation, file)
        session.converted = converted
        for sink in sinks.values():
            sink.on_keyframe_request = lambda s=session: self._keyframe_request(s)
        answer = answer_sdp(
            plan,
            ice_ufrag=peer.ice_ufrag,
            ice_pwd=peer.ice_pwd,
            fingerprint=peer.fingerprint(),
            candidates=peer.local_candidates(),
            ssrcs={index: b.stream.ssrc for index, b in bindings.items()},
            cname=self.cname,
            session_id=secrets.randbits(62),
        )
        self.sessions[session_id] = session
        session.relayed = live is not None and self.server.config.path_settings(path).source is not None
        if session.relayed:
            self.server.web_viewers[path] += 1  # keeps the relay pulled while we watch
        session.task = asyncio.get_running_loop().create_task(self._run(session))
        codecs = ", ".join(f"{c.codec.encoding}/{c.codec.payload_type}" for c in plan.choices)
        left = f"; left out: {'; '.join(plan.left_out)}" if plan.left_out else ""
        log.info("%s: offer for %s answered (%s%s)", session.label, path, codecs, left)
        return session, answer

    def _converter(self, live: LivePath, index: int) -> Converter:
        """The path's converter of track ``index`` to Opus (made by its first viewer)."""
        key = (id(live), index)
        held = self.converters.get(key)
        if held is None or held[0].live is not live:
            held = (make_converter(live, index), 0)
            what = "H.264" if held[0].track.kind == "video" else "Opus"
            log.info("%s: track %d converted to %s for WebRTC viewers", live.name, index, what)
        self.converters[key] = (held[0], held[1] + 1)
        return held[0]

    def _release_converters(self, converted: dict[int, Converter]) -> None:
        for index, converter in converted.items():
            key = (id(converter.live), index)
            held = self.converters.get(key)
            if held is None or held[0] is not converter:
                continue
            if held[1] <= 1:
                del self.converters[key]
                converter.close()
            else:
                self.converters[key] = (converter, held[1] - 1)
        converted.clear()

    async def _target(self, path: str) -> tuple[LivePath | None, Presentation | None, Path | None]:
        resolved = await self.server.resolve(path)  # 404/415, pulls a relay
        live = self.server.live.get(path)
        if live is not None and live.online:
            return live, None, None
        return None, resolved.presentation, resolved.file

    async def trickle(self, session_id: str, fragment: str) -> None:
        """Candidates from a PATCH (``application/trickle-ice-sdpfrag``)."""
        session = self._get(session_id)
        candidates = [line[12:].strip() for line in fragment.splitlines() if line.startswith("a=candidate:")]
        end = any(line.strip() == "a=end-of-candidates" for line in fragment.splitlines())
        if not candidates and not end:
            raise RtspError(400, "the fragment has no a=candidate or a=end-of-candidates line")
        await session.peer.add_remote_candidates(candidates[:64], end)

    async def delete(self, session_id: str) -> None:
        session = self._get(session_id)
        await self.end(session, "the viewer ended it (DELETE)")

    def _get(self, session_id: str) -> WhepSession:
        session = self.sessions.get(session_id)
        if session is None:
            raise RtspError(404, "no such WebRTC session (ended, or never was)")
        return session

    # --- a session's life ----------------------------------------------------------------------

    async def _run(self, session: WhepSession) -> None:
        offer = session.plan.offer
        peer = session.peer
        try:
            try:
                await peer.add_remote_candidates(offer.candidates, offer.end_of_candidates)
                dtls_server = offer.setup != "passive"
                connecting = peer.connect(
                    offer.ice_ufrag, offer.ice_pwd, offer.ice_lite, offer.fingerprints, dtls_server
                )
                await asyncio.wait_for(connecting, self.connect_timeout)
            finally:
                self._connected_or_not(session)
        except TimeoutError:
            await self.end(session, f"ICE/DTLS did not complete within {self.connect_timeout:g} s")
            return
        except (ConnectionError, OSError) as exc:
            await self.end(session, f"connecting failed: {exc}")
            return
        except asyncio.CancelledError:
            return
        session.connected = True
        for index, sink in session.sinks.items():
            peer.on_rtcp(session.bindings[index].stream.ssrc, sink)
        for transport in (peer.ice, peer.dtls):
            transport.on("statechange", lambda: self._check_transport(session))
        try:
            await self._start_media(session)
        except RtspError as exc:
            await self.end(session, exc.reason)
            return
        except Exception as exc:
            log.exception("%s: cannot start sending", session.label)
            await self.end(session, f"cannot start sending: {exc}")
            return
        log.info(
            "%s: connected after %.0f ms, sending %s",
            session.label,
            (time.monotonic() - session.started) * 1000,
            session.path,
        )
        while not session.ended:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(session.gone.wait(), WATCH_INTERVAL)
            if session.ended:
                return
            if session.gone.is_set():
                await self.end(session, "the viewer went away (ICE consent or DTLS closed)")
                return
            live = session.live
            if live is not None and (not live.online or self.server.live.get(session.path) is not live):
                await self.end(session, "the live path went offline")
                return
            if live is not None:
                self._convert_late(session, live)

    def _convert_late(self, session: WhepSession, live: LivePath) -> None:
        """The hub found B-frames in a video track this viewer gets as it is (it came before they
        showed): from the converter's next keyframe on, it gets the path's conversion instead."""
        reader = session.reader
        for index, binding in session.bindings.items():
            if reader is None or index in session.converted or not binding.is_video:
                continue
            track = live.tracks.get(index)
            if track is None or not live_video_convertible(track) or index in session.unconvertible:
                continue
            try:
                converter = session.converted[index] = self._converter(live, index)
            except (MediaError, ValueError, UnsupportedCodec) as exc:
                session.unconvertible.add(index)
                log.warning("%s: track %d keeps its B-frames: %s", session.label, index, exc)
                continue
            reader.convert(index, converter)
            converter.request_keyframe()
            if live.request_keyframe is not None:
                live.request_keyframe()  # the converter decodes from the source's next keyframe

    def _connected_or_not(self, session: WhepSession) -> None:
        """No longer pending (once only: from the connect task, or from an end before it ran)."""
        if session.pending:
            session.pending = False
            self.pending.release(session.client)

    def _check_transport(self, session: WhepSession) -> None:
        if session.peer.ice.state in ("failed", "closed") or session.peer.dtls.state in ("failed", "closed"):
            session.gone.set()

    async def _start_media(self, session: WhepSession) -> None:
        if session.live is not None:
            reader = WebrtcLiveReader(
                session.live, session.bindings, session.label, session.converted, self.histories
            )
            session.reader = reader
            reader.on_reordered = lambda _index, live=session.live: self._convert_late(session, live)
            reader.attach()
            for converter in session.converted.values():
                converter.request_keyframe()  # a new viewer starts on a keyframe: make one now
            return
        assert session.presentation is not None and session.file is not None
        playback = session.playback = WebrtcPlayback(
            session.file,
            session.presentation,
            session.bindings,
            label=session.label,
            on_end=lambda reason: self._file_ended(session, reason),
            settings=self.settings,
        )
        playback.video = converted_video(session.presentation)
        playback.chunks = self.file_chunks
        await playback.prepare(PlayRequest(Fraction(0)))
        playback.start()
        data = session.plan.data_section
        if data is not None:
            port = session.plan.offer.sections[data].sctp_port or 5000
            session.control = FileControl(playback, session.presentation.duration, session.label)
            await session.control.start(session.peer.dtls, port)

    def _file_ended(self, session: WhepSession, reason: str) -> None:
        asyncio.get_running_loop().create_task(self.end(session, f"the file ended ({reason})"))

    def _keyframe_request(self, session: WhepSession) -> None:
        """PLI/FIR from the viewer: a live path's next keyframe comes from its source (a Python
        source or camera sends them at its own interval); a file restarts at the keyframe at or
        before where it stands."""
        now = time.monotonic()
        if now - session.last_keyframe_request < KEYFRAME_REQUEST_INTERVAL:
            return
        session.last_keyframe_request = now
        if session.live is not None:
            for converter in session.converted.values():
                converter.request_keyframe()
            request = getattr(session.live, "request_keyframe", None)
            if callable(request):
                request()
            return
        if session.control is None and session.playback is not None:
            session.control = FileControl(session.playback, None, session.label)  # no channel: the lock
        if session.control is not None:
            asyncio.get_running_loop().create_task(self._restart_at_keyframe(session, session.control))

    async def _restart_at_keyframe(self, session: WhepSession, control: FileControl) -> None:
        try:
            await control.restart_at_keyframe()
        except Exception as exc:
            log.warning("%s: restarting at a keyframe failed: %s", session.label, exc)

    async def end(self, session: WhepSession, reason: str) -> None:
        if session.ended:
            return
        session.ended = True
        self.sessions.pop(session.id, None)
        self._connected_or_not(session)
        if session.relayed:
            viewers = self.server.web_viewers
            viewers[session.path] -= 1
            if viewers[session.path] <= 0:
                del viewers[session.path]
        if session.reader is not None:
            session.reader.detach(bye=True)
        self._release_converters(session.converted)
        if session.control is not None:
            await session.control.stop()
        if session.playback is not None:
            await session.playback.stop()
        await session.peer.close()
        if session.task is not None and session.task is not asyncio.current_task():
            session.task.cancel()
        sent = sum(s.sent for s in session.sinks.values())
        again = sum(s.retransmitted for s in session.sinks.values())
        plis = sum(s.keyframe_requests for s in session.sinks.values())
        log.info(
            "%s: %s ended: %s (%d packets, %d resent for NACKs, %d keyframe requests)",
            session.label,
            session.path,
            reason,
            sent,
            again,
            plis,
        )

    async def close_all(self) -> None:
        for session in list(self.sessions.values()):
            await self.end(session, "the server stops")
        self.file_chunks.close()
