"""WHIP ingest (RFC 9725): a browser or OBS publishes a live path over WebRTC.

The publisher's offer is answered recvonly with the codecs we keep as sent (H.264, VP8, Opus).
Once ICE and DTLS complete, its SRTP is unprotected by aiortc's DTLS transport and each RTP
packet goes to the path's hub as an RTSP publisher's would (``LivePath.on_rtp``), so RTSP, WHEP,
``/mp4`` and recording read it like any other live path. An H.264 path goes online at the first
SPS/PPS (browsers send them in band before keyframes, not in the SDP) so its readers get a
description with ``sprop-parameter-sets``; packets before that are dropped (a PLI asks for a
keyframe at once). Keyframe requests from the path's readers become PLIs to the publisher. When
the publisher goes (DELETE, ICE consent lost, DTLS closed) the path goes offline: readers get
RTCP BYE, exactly as when an RTSP publisher leaves.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiortc.rtp import RTCP_PSFB_PLI, HeaderExtensions, RtcpByePacket, RtcpPsfbPacket, RtcpSrPacket, RtpPacket

from media import h264
from sdp import parse as parse_sdp
from streamd.live.announced import announced_tracks
from streamd.live.hub import LivePath
from streamd.rtp.payload.h264 import H264Depacketizer
from streamd.rtsp.errors import RtspError
from streamd.webrtc.ice_ports import PortsExhausted
from streamd.webrtc.negotiate import Choice, Plan, answer_sdp, negotiate_publish, parse_offer
from streamd.webrtc.peer import Peer, ice_servers
from streamd.webrtc.port_range import PortPicker, parse_port_range
from streamd.workers.ownership import LocalOwners, PathOwners

if TYPE_CHECKING:
    from streamd.http.backend import HttpBackend

log = logging.getLogger(__name__)

MAX_EARLY_PACKETS = 3000  # video packets looked through for SPS/PPS before giving up on them
PLI_INTERVAL = 0.5
WATCH_INTERVAL = 0.25  # how often a publisher's session looks for readers waiting for a keyframe


@dataclass
class WhipSession:
    id: str
    path: str
    client: str
    peer: Peer
    plan: Plan
    live: LivePath | None = None
    ended: bool = False
    task: asyncio.Task[None] | None = None
    gone: asyncio.Event = field(default_factory=asyncio.Event)
    ssrcs: dict[int, int] = field(default_factory=dict)  # m-line -> the publisher's SSRC
    sps_pps: tuple[bytes, bytes] | None = None
    early: int = 0
    last_pli: float = 0.0
    taps: int = 0  # unit listeners (recordings, /mp4 views) last seen on the path
    our_ssrc: int = field(default_factory=lambda: secrets.randbits(32))

    @property
    def label(self) -> str:
        return f"WHIP {self.id[:8]} ({self.client})"


class _Receiver:
    """What aiortc's RTP router hands one m-line's RTP and RTCP to."""

    def __init__(self, service: WhipService, session: WhipSession, choice: Choice, index: int) -> None:
        self.service, self.session, self.choice = service, session, choice
        self.index = index  # the track's index in the path (its m-line in the announced description)
        self.depacketizer = H264Depacketizer() if choice.codec.encoding == "H264" else None

    async def _handle_rtp_packet(self, packet: RtpPacket, arrival_time_ms: int) -> None:
        self.service.rtp(self, packet)

    async def _handle_rtcp_packet(self, packet: Any) -> None:
        if isinstance(packet, RtcpSrPacket):
            self.service.sender_report(self, packet)
        elif isinstance(packet, RtcpByePacket):
            self.session.gone.set()

    def _handle_disconnect(self) -> None:
        self.session.gone.set()


class WhipService:
    def __init__(self, server: HttpBackend) -> None:
        self.server = server
        config = server.config
        self.connect_timeout = float(getattr(config, "webrtc_connect_timeout", 15.0))
        self.servers = ice_servers(
            tuple(getattr(config, "webrtc_ice_servers", ())),
            getattr(config, "webrtc_turn_username", None),
            getattr(config, "webrtc_turn_password", None),
        )
        udp_ports = parse_port_range(getattr(config, "webrtc_udp_ports", None))
        self.ports = PortPicker(udp_ports) if udp_ports is not None else None
        self.sessions: dict[str, WhipSession] = {}
        self.max_sessions = int(getattr(config, "max_publishers", 200))
        # who publishes which path across worker processes (one process: every claim holds), and
        # whether a live path here is a sibling worker's, relayed (its end may not have arrived yet)
        self.owners: PathOwners = LocalOwners()
        self.relayed: Callable[[LivePath], bool] = lambda _live: False

    async def create(self, path: str, offer_text: str, client: str) -> tuple[WhipSession, str]:
        config = self.server.config
        if not config.accepts_publisher(path):
            raise RtspError(403, f"{path!r} does not take publishers (see the publish setting of [paths])")
        existing = self.server.live.get(path)
        online = existing is not None and existing.online and not self.relayed(existing)
        if online or any(s.path == path for s in self.sessions.values()):
            raise RtspError(409, f"{path!r} is already being published")
        if len(self.sessions) >= self.max_sessions:
            raise RtspError(503, f"{self.max_sessions} WHIP publishers already; try again later")
        offer = parse_offer(offer_text)
        plan = negotiate_publish(offer)
        session_id = secrets.token_urlsafe(24)
        holder = await self.owners.claim(path, session_id)
        if holder is not None:  # a publisher in another worker process
            log.info("WHIP %s from %s refused: published in worker %d", path, client, holder.worker)
            raise RtspError(409, f"{path!r} is already being published")
        peer = Peer(self.servers, self.ports)
        try:
            await peer.gather()
        except PortsExhausted as exc:
            log.warning("WHIP %s from %s refused: %s", path, client, exc)
            self.owners.release(path, session_id)
            await peer.close()
            raise RtspError(503, str(exc)) from None
        except BaseException:
            self.owners.release(path, session_id)
            await peer.close()
            raise
        session = WhipSession(session_id, path, client, peer, plan)
        answer = answer_sdp(
            plan,
            ice_ufrag=peer.ice_ufrag,
            ice_pwd=peer.ice_pwd,
            fingerprint=peer.fingerprint(),
            candidates=peer.local_candidates(),
            ssrcs={},
            cname="streamd",
            session_id=secrets.randbits(62),
            receive=True,
        )
        self.sessions[session.id] = session
        session.task = asyncio.get_running_loop().create_task(self._run(session))
        codecs = ", ".join(f"{c.codec.encoding}/{c.codec.payload_type}" for c in plan.choices)
        log.info("%s: publishing offer for %s answered (%s)", session.label, path, codecs)
        return session, answer

    async def delete(self, session_id: str) -> None:
        session = self.sessions.get(session_id)
        if session is None:
            raise RtspError(404, "no such WHIP session (ended, or never was)")
        await self.end(session, "the publisher ended it (DELETE)")

    async def _run(self, session: WhipSession) -> None:
        offer, peer = session.plan.offer, session.peer
        try:
            await peer.add_remote_candidates(offer.candidates, offer.end_of_candidates)
            connecting = peer.connect(
                offer.ice_ufrag, offer.ice_pwd, offer.ice_lite, offer.fingerprints, offer.setup != "passive"
            )
            await asyncio.wait_for(connecting, self.connect_timeout)
        except TimeoutError:
            await self.end(session, f"ICE/DTLS did not complete within {self.connect_timeout:g} s")
            return
        except (ConnectionError, OSError) as exc:
            await self.end(session, f"connecting failed: {exc}")
            return
        receivers = [_Receiver(self, session, choice, i) for i, choice in enumerate(session.plan.choices)]
        for receiver in receivers:
            peer.dtls._rtp_router.register_receiver(
                receiver, ssrcs=[], payload_types=[receiver.choice.codec.payload_type], mid=None
            )
        for transport in (peer.ice, peer.dtls):
            transport.on("statechange", lambda: self._check(session))
        log.info("%s: connected, publishing %s", session.label, session.path)
        if not any(r.depacketizer for r in receivers):
            self._go_online(session)
        else:
            self._pli(session, force=True)
        while not session.ended:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(session.gone.wait(), WATCH_INTERVAL)
            self._keyframe_for_new_readers(session)
            if session.gone.is_set():
                await self.end(session, "the publisher went away (ICE consent, DTLS or RTCP BYE)")
                return

    def _keyframe_for_new_readers(self, session: WhipSession) -> None:
        """Browsers send a keyframe at the start and then only when asked: a reader (RTSP, WHEP,
        ``/mp4``, a recording) that joined later waits for one, so it is asked for."""
        live = session.live
        if live is None:
            return
        waiting = any(not getattr(reader, "started", True) for reader in live.readers)
        taps = len(live.unit_listeners)
        if waiting or taps > session.taps:
            self._pli(session)
        session.taps = taps

    def _check(self, session: WhipSession) -> None:
        if session.peer.ice.state in ("failed", "closed") or session.peer.dtls.state in ("failed", "closed"):
            session.gone.set()

    # --- media in --------------------------------------------------------------------------------

    def rtp(self, receiver: _Receiver, packet: RtpPacket) -> None:
        session = receiver.session
        if session.ended:
            return
        session.ssrcs[receiver.choice.section] = packet.ssrc
        if session.live is None:
            if receiver.depacketizer is None:
                return  # audio before the video's parameter sets: dropped, the path is not up yet
            self._look_for_parameter_sets(session, receiver, packet)
            if session.live is None:
                return
        track = session.live.tracks.get(receiver.index)
        if track is not None:
            session.live.on_rtp(track, _rtp_bytes(packet))

    def _look_for_parameter_sets(self, session: WhipSession, receiver: _Receiver, packet: RtpPacket) -> None:
        assert receiver.depacketizer is not None
        session.early += 1
        units = receiver.depacketizer.push(
            packet.payload, bool(packet.marker), packet.timestamp, packet.sequence_number
        )
        for unit in units:
            sps = next((n for n in unit.nal_units if h264.nal_type(n) == 7), None)
            pps = next((n for n in unit.nal_units if h264.nal_type(n) == 8), None)
            if sps is not None and pps is not None:
                session.sps_pps = (sps, pps)
                self._go_online(session)
                return
        if session.early % 100 == 0:
            self._pli(session)
        if session.early >= MAX_EARLY_PACKETS:
            session.gone.set()
            log.warning("%s: no H.264 SPS/PPS in %d packets", session.label, session.early)

    def sender_report(self, receiver: _Receiver, packet: RtcpSrPacket) -> None:
        live = receiver.session.live
        track = live.tracks.get(receiver.index) if live is not None else None
        if track is not None:
            info = packet.sender_info
            live.on_sender_report(track, info.ntp_timestamp, info.rtp_timestamp)

    def _go_online(self, session: WhipSession) -> None:
        description = parse_sdp(_announce_sdp(session))
        tracks = announced_tracks(description.media)
        live = LivePath.from_announce(session.path, description, tracks, session.label)
        live.request_keyframe = lambda: self._pli(session)
        existing = self.server.live.get(session.path)
        if existing is not None and existing.online and self.relayed(existing):  # the previous one's
            self.server.remove_live(existing, f"{session.label} (published here now)")  # type: ignore[attr-defined]
        try:
            self.server.add_live(live)  # type: ignore[attr-defined]
        except ValueError as exc:
            log.warning("%s: %s", session.label, exc)
            session.gone.set()
            return
        session.live = live

    def _pli(self, session: WhipSession, *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - session.last_pli < PLI_INTERVAL:
            return
        session.last_pli = now
        for choice in session.plan.choices:
            if session.plan.offer.sections[choice.section].kind == "video":
                media_ssrc = session.ssrcs.get(choice.section, 0)
                pli = RtcpPsfbPacket(fmt=RTCP_PSFB_PLI, ssrc=session.our_ssrc, media_ssrc=media_ssrc)
                session.peer.send_rtcp(bytes(pli))

    async def end(self, session: WhipSession, reason: str) -> None:
        if session.ended:
            return
        session.ended = True
        self.sessions.pop(session.id, None)
        if session.live is not None:
            self.server.remove_live(session.live, session.label)  # type: ignore[attr-defined]
        self.owners.release(session.path, session.id)
        await session.peer.close()
        if session.task is not None and session.task is not asyncio.current_task():
            session.task.cancel()
        units = session.live.units_in if session.live is not None else 0
        log.info("%s: %s ended: %s (%d units in)", session.label, session.path, reason, units)

    async def close_all(self) -> None:
        for session in list(self.sessions.values()):
            await self.end(session, "the server stops")


def _announce_sdp(session: WhipSession) -> str:
    """The publisher's tracks as an RTSP publisher would ANNOUNCE them (one m-line each, its
    control the m-line position), so the hub takes them apart the same way."""
    lines = ["v=0", "o=- 0 0 IN IP4 0.0.0.0", "s=WHIP", "t=0 0"]
    for choice in session.plan.choices:
        codec = choice.codec
        kind = session.plan.offer.sections[choice.section].kind
        pt = codec.payload_type
        channels = f"/{codec.channels}" if codec.channels else ""
        name = "opus" if codec.encoding == "OPUS" else codec.encoding
        lines += [f"m={kind} 0 RTP/AVP {pt}", f"a=rtpmap:{pt} {name}/{codec.clock_rate}{channels}"]
        if codec.encoding == "H264" and session.sps_pps is not None:
            sps, pps = session.sps_pps
            sprop = ",".join(base64.b64encode(n).decode() for n in (sps, pps))
            fmtp = f"packetization-mode=1;profile-level-id={sps[1:4].hex()};sprop-parameter-sets={sprop}"
            lines.append(f"a=fmtp:{pt} {fmtp}")
        lines.append(f"a=control:trackID={len(lines)}")
    return "\r\n".join(lines) + "\r\n"


def _rtp_bytes(packet: RtpPacket) -> bytes:
    """The packet as it came, without header extensions (none were negotiated)."""
    packet.extensions = HeaderExtensions()
    return packet.serialize()
