"""Multicast for live paths: one shared send per path to its group, however many players listen.

A :class:`GroupSender` is a listener on the :class:`LivePath` like a unicast reader, but with
one :class:`OutgoingStream` per track of its own (one SSRC, sequence and timestamp space): each
packet is built once and sent once, to the group. RTSP sessions that SET UP multicast get
bindings to those shared streams and a :class:`MulticastSink` that sends nothing itself; their
PLAY/PAUSE/TEARDOWN only count members. The send runs while a member plays, or all the time the
path is online when the path is configured ``multicast = true`` (so a player holding only the
SDP from the web side can join). Receivers' RTCP reports reach us on the group's RTCP port and
are kept per receiver SSRC.

With worker processes (``streamd serve --workers N``) a :class:`GroupLink` is set: groups come
from the parent (one per path for the whole server) and one worker sends; a worker whose path is
relayed from the sender's holds a *mirror* of the send (:class:`GroupSender` with ``mirror``):
the sender's group, SSRCs and key for its SETUP replies, the receivers' reports for its sessions'
keep-alive, and nothing sent. Its sessions' counts reach the sender through the parent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Protocol

from aiortc.rtp import RtcpByePacket, RtcpRrPacket, RtcpSrPacket

from sdp import Connection
from sdp import parse as parse_sdp
from sdp import write as write_sdp
from streamd.live.hub import LivePath, Payloads
from streamd.live.keyframe_gate import KeyframeGate
from streamd.live.multicast_groups import Allocation, GroupPool, MulticastRange, PoolExhausted
from streamd.rtp.clock import unix_to_ntp
from streamd.rtp.outgoing import OutgoingStream
from streamd.rtp.presentation import Presentation
from streamd.rtp.reception import ReceptionReport
from streamd.rtp.rtcp import parse_compound
from streamd.rtp.rtcp_interval import rtcp_interval
from streamd.rtsp.errors import RtspError
from streamd.rtsp.headers.transport import TransportSpec
from streamd.srtp.context import Protector, Unprotector
from streamd.srtp.sdes import CryptoAttribute, format_crypto
from streamd.srtp.suites import MasterKey
from streamd.transport.multicast import Address, GroupSockets

log = logging.getLogger(__name__)

MAX_RECEIVERS = 4096  # per track; the least recently heard is forgotten first
RECEIVER_TIMEOUT = 30.0  # seconds without a report before a receiver no longer counts (RFC 3550 6.3.5)
UDP_IP_OVERHEAD = 28


@dataclass
class Receiver:
    """One player as its RTCP reports show it (a player reading the SDP alone is seen only here)."""

    ssrc: int
    address: Address
    report: ReceptionReport = field(default_factory=ReceptionReport)
    last_seen: float = 0.0

    def as_dict(self) -> dict[str, object]:
        return {"ssrc": self.ssrc, "address": f"{self.address[0]}:{self.address[1]}", **self.report.as_dict()}


@dataclass(frozen=True)
class Grant:
    """A path's group as the whole server has it (worker processes): who sends, and when that is
    another worker, what its send uses (SSRC and next sequence number per track, SRTP key)."""

    allocation: Allocation
    here: bool  # this worker sends
    ssrcs: dict[int, int] = field(default_factory=dict)
    seqs: dict[int, int] = field(default_factory=dict)
    key: MasterKey | None = None


class GroupLink(Protocol):
    """How a worker's multicast reaches the parent (:mod:`streamd.workers.multicast_link`)."""

    async def hold(self, live: LivePath) -> Grant:
        """The path's group for the whole server; RtspError (453, 404, 503) when there is none."""
        ...

    def report(self, path: str, playing: int, setups: int, held: bool) -> None:
        """This worker's sessions on the path's group now, and whether it still holds it."""
        ...


@dataclass
class GroupTrack:
    index: int
    control: str
    port: int
    stream: OutgoingStream
    sockets: GroupSockets | None = None
    receivers: dict[int, Receiver] = field(default_factory=dict)


class GroupSender:
    """The one send of ``live`` to its group; a ``Listener`` of the path while it runs."""

    def __init__(
        self,
        live: LivePath,
        allocation: Allocation,
        ttl: int,
        interface: str,
        cname: str,
        *,
        always: bool,
        encrypted: bool = False,
        mirror: bool = False,
    ) -> None:
        self.live = live
        self.mirror = mirror  # another worker sends: this one answers for it and hears reports
        self.encrypted = encrypted  # SRTP: one key for the group, shared by its readers
        self.key: MasterKey | None = None
        self._protect: Protector | None = None
        self._reports_in: Unprotector | None = None
        self.allocation = allocation
        self.ttl = ttl
        self.interface = interface
        self.always = always
        self.members: set[str] = set()  # RTSP sessions playing
        self.setups: set[str] = set()  # RTSP sessions set up (playing or not)
        self.remote_playing = 0  # other workers' sessions playing (worker processes)
        self.remote_setups = 0  # ... set up
        self.running = False
        self.tracks: dict[int, GroupTrack] = {}
        for index, track in live.tracks.items():
            fmt = track.announced.payload_format
            stream = OutgoingStream(fmt, Fraction(1, fmt.clock_rate), cname=cname)
            control = f"trackID={index}"  # as readers know it (the publisher's may differ)
            self.tracks[index] = GroupTrack(index, control, allocation.port(index), stream)
        self._has_video = any(t.announced.track.kind == "video" for t in live.tracks.values())
        self.gate = KeyframeGate(self._has_video)
        self._began = 0.0
        self._next_report = 0.0
        self._reported = False
        self._avg_rtcp_size = 128.0

    @property
    def started(self) -> bool:
        """Whether the send has begun (video on a keyframe)."""
        return self.gate.open

    def adopt(self, grant: Grant) -> None:
        """A mirror takes the sending worker's SSRCs, sequence numbers and key."""
        for index, track in self.tracks.items():
            if index in grant.ssrcs:
                track.stream.ssrc = grant.ssrcs[index]
            if index in grant.seqs:
                track.stream.next_seq = grant.seqs[index]
        if grant.key != self.key:
            self.key = grant.key
            self._protect = Protector(grant.key) if grant.key is not None else None
            self._reports_in = Unprotector(grant.key) if grant.key is not None else None

    def _want_keyframe(self) -> None:
        """Waiting at the keyframe gate: the path's source is asked for one, as for a reader."""
        if self.live.request_keyframe is not None:
            self.live.request_keyframe()

    @property
    def label(self) -> str:
        return f"multicast {self.live.name} -> {self.allocation.group}"

    def describe(self, index: int) -> str:
        port = self.tracks[index].port
        return f"UDP multicast {self.allocation.group}:{port}-{port + 1} ttl {self.ttl}"

    # --- SRTP ---------------------------------------------------------------------------------

    def group_key(self) -> MasterKey | None:
        """The group's SRTP key (None for a plain group), made when first needed: at the first
        SETUP or start. It changes when the send restarts after every session that knew it left."""
        if self.encrypted and self.key is None and not self.mirror:
            self.key = MasterKey.generate()
            self._protect = Protector(self.key)
            self._reports_in = Unprotector(self.key)
        return self.key

    def _rtcp_out(self, packet: bytes) -> bytes:
        return self._protect.rtcp(packet) if self._protect is not None else packet

    # --- the send ---------------------------------------------------------------------------

    def start(self) -> None:
        """Open the sockets and listen to the path (from its next keyframe); OSError if it cannot."""
        if self.running:
            return
        opened: list[GroupSockets] = []
        try:
            for track in self.tracks.values():
                sockets = GroupSockets(
                    self.allocation.group,
                    track.port,
                    self.ttl,
                    self.interface,
                    lambda data, source, t=track: self._rtcp_received(t, data, source),
                )
                sockets.open()
                opened.append(sockets)
                track.sockets = sockets
        except OSError:
            for sockets in opened:
                sockets.close()
            for track in self.tracks.values():
                track.sockets = None
            raise
        self.running = True
        if self.mirror:
            log.info("%s: sent by another worker; hearing its receivers' reports here", self.label)
            return
        self.group_key()
        self.gate = KeyframeGate(self._has_video, self._want_keyframe)  # each send begins on a keyframe
        self._began = time.time()
        self._reported = False
        self._next_report = self._began + 1.0  # the first round soon, then the RFC 3550 interval
        self.live.readers.add(self)
        log.info(
            "%s: sending (%s), ttl %d, via %s",
            self.label,
            ", ".join(f"{t.control} port {t.port}" for t in self.tracks.values()),
            self.ttl,
            self.interface,
        )

    def stop(self, reason: str) -> None:
        """Stop the send: RTCP BYE to the group, sockets closed. A later start is a new SSRC."""
        if not self.running:
            return
        self.live.readers.discard(self)
        self.running = False
        if self.mirror:  # the sender says goodbye, not us
            for track in self.tracks.values():
                if track.sockets is not None:
                    track.sockets.close()
                    track.sockets = None
                track.receivers.clear()
            return
        now = time.time()
        ntp = unix_to_ntp(now)
        for track in self.tracks.values():
            sockets = track.sockets
            if sockets is None:
                continue
            if track.stream.packet_count:
                bye = track.stream.goodbye(ntp, self._media_now(track.index, now))
                sockets.send_rtcp(self._rtcp_out(bye))
            sockets.close()
            track.sockets = None
            log.info(
                "%s: %s stopped (%s): %d packets, %d bytes, %d dropped, %d receivers reporting",
                self.label,
                track.control,
                reason,
                track.stream.packet_count,
                track.stream.octet_count,
                sockets.dropped,
                len(track.receivers),
            )
            track.stream.renew()  # after a BYE the SSRC is gone: a later send is a new source
            track.receivers.clear()
        if not self.setups and not self.remote_setups:  # nobody knows the key: the next send gets a new one
            self.key = self._protect = self._reports_in = None

    def sender_gone(self) -> None:
        """A mirror whose sending worker died: RTCP BYE in the send's name, so players end as
        when a send stops (plain groups only: a second SRTCP context under the group's key would
        reuse its keystream), then no more listening here."""
        if not self.mirror:
            return
        for track in self.tracks.values():
            if self._protect is None and track.sockets is not None:
                ssrc = track.stream.ssrc
                track.sockets.send_rtcp(bytes(RtcpRrPacket(ssrc=ssrc)) + bytes(RtcpByePacket(sources=[ssrc])))
        self.stop("the sending worker is gone")

    def __call__(self, index: int, ticks: int, payloads: Payloads, keyframe: bool, leading: bool) -> None:
        track = self.tracks.get(index)
        if track is None or track.sockets is None:
            return
        video = self.live.tracks[index].announced.track.kind == "video"
        if not self.gate.admit(video, keyframe, leading):
            return
        stream = track.stream
        now = time.time()
        if not stream.packet_count:
            # a sender report ahead of the first packet: players (ffmpeg) that sync by SR get the
            # mapping from the start instead of re-basing the track's timestamps later on
            self._send_report(track, now, unix_to_ntp(now))
        send = track.sockets.send_rtp
        packets = stream.pack(ticks, payloads)
        if self._protect is not None:
            packets = self._protect.rtp_many(packets)  # once per packet for the whole group
        for packet in packets:
            send(packet)
        if now >= self._next_report:
            self._send_reports(now)

    def _media_now(self, index: int, now: float) -> Fraction:
        track = self.live.tracks.get(index)
        ticks = track.now_ticks(now) if track else None
        return Fraction(ticks or 0, self.tracks[index].stream.clock_rate)

    def _send_reports(self, now: float) -> None:
        """SR + SDES on every track; the next one after the RFC 3550 interval for this many members."""
        ntp = unix_to_ntp(now)
        octets = 0
        for track in self.tracks.values():
            octets += track.stream.octet_count
            if track.stream.packet_count:
                self._send_report(track, now, ntp)
        elapsed = max(now - self._began, 1.0)
        self._next_report = now + rtcp_interval(
            members=1 + self.receiver_count(now),
            senders=1,
            session_bandwidth=octets / elapsed,
            avg_rtcp_size=self._avg_rtcp_size,
            we_sent=True,
            initial=not self._reported,
        )
        self._reported = True

    def _send_report(self, track: GroupTrack, now: float, ntp: int) -> None:
        live_track = self.live.tracks.get(track.index)
        ticks = live_track.now_ticks(now) if live_track else None
        if ticks is None or track.sockets is None:
            return
        report = self._rtcp_out(track.stream.sender_report(ntp, Fraction(ticks, track.stream.clock_rate)))
        self._avg_rtcp_size += (len(report) + UDP_IP_OVERHEAD - self._avg_rtcp_size) / 16
        track.sockets.send_rtcp(report)

    # --- what the receivers report ------------------------------------------------------------

    def _rtcp_received(self, track: GroupTrack, data: bytes, source: Address) -> None:
        if self.encrypted:  # only reports under the group's key count (ours come back looped too)
            clear = self._reports_in.rtcp(data) if self._reports_in is not None else None
            if clear is None:
                return
            data = clear
        now = time.time()
        self._avg_rtcp_size += (len(data) + UDP_IP_OVERHEAD - self._avg_rtcp_size) / 16
        ours = track.stream.ssrc
        now_ntp = unix_to_ntp(now)
        for packet in parse_compound(data):
            if isinstance(packet, RtcpByePacket):
                for ssrc in packet.sources:
                    track.receivers.pop(ssrc, None)
                continue
            if not isinstance(packet, RtcpRrPacket | RtcpSrPacket) or packet.ssrc == ours:
                continue  # our own reports come back through the loopback
            for block in packet.reports:
                if block.ssrc != ours and not self.mirror:  # (a mirror's SSRC may be an older one)
                    continue
                receiver = track.receivers.pop(packet.ssrc, None) or Receiver(packet.ssrc, source)
                receiver.address = source
                receiver.last_seen = now
                receiver.report.update(
                    block, track.stream.clock_rate, now_ntp, track.stream.sr_sent_at(block.lsr)
                )
                track.receivers[packet.ssrc] = receiver  # most recently heard last
                while len(track.receivers) > MAX_RECEIVERS:
                    del track.receivers[next(iter(track.receivers))]

    def receiver_count(self, now: float | None = None) -> int:
        """Distinct receivers heard from lately (over all tracks, by address and SSRC)."""
        now = time.time() if now is None else now
        seen = set()
        for track in self.tracks.values():
            for r in track.receivers.values():
                if now - r.last_seen <= RECEIVER_TIMEOUT:
                    seen.add(r.address[0])
        return len(seen)

    def reception_for(self, index: int, host: str) -> ReceptionReport:
        """The latest report of a receiver on ``host`` (an RTSP session's client) for one track."""
        track = self.tracks.get(index)
        if track is not None:
            for receiver in reversed(list(track.receivers.values())):
                if receiver.address[0] == host:
                    return receiver.report
        return ReceptionReport()

    def as_dict(self) -> dict[str, object]:
        return {
            "path": self.live.name,
            "group": self.allocation.group,
            "ttl": self.ttl,
            "interface": self.interface,
            "sending": self.running,
            "always": self.always,
            "rtsp_members": len(self.members) + self.remote_playing,  # other workers' too
            "tracks": [
                {
                    "control": t.control,
                    "port": t.port,
                    "rtcp_port": t.port + 1,
                    "ssrc": t.stream.ssrc,
                    "packets_sent": t.stream.packet_count,
                    "bytes_sent": t.stream.octet_count,
                    "receivers": [r.as_dict() for r in t.receivers.values()],
                }
                for t in self.tracks.values()
            ],
        }


def key_message(key: MasterKey | None) -> dict[str, str] | None:
    """A group's key as the workers pass it to each other (their private channel only)."""
    return None if key is None else {"suite": key.suite.name, "material": key.material.hex()}


def group_sdp(
    allocation: Allocation,
    ttl: int,
    key: MasterKey | None,
    presentation: Presentation,
    unicast_sdp: str,
    *,
    secure: bool,
) -> str:
    """``unicast_sdp`` with the group in ``c=`` and each track's port in its ``m=`` line (and the
    group's key, given over HTTPS only: 403 otherwise)."""
    path = allocation.path
    if key is not None and not secure:
        raise RtspError(403, f"{path!r} is sent as SRTP: its SDP (with the key) is given over HTTPS only")
    description = parse_sdp(unicast_sdp)
    description.connection = Connection(addrtype="IP4", address=allocation.group, ttl=ttl)
    description.set("type", "broadcast")
    description.set("recvonly", None)
    for streamable, media in zip(presentation.tracks, description.media, strict=True):
        port = allocation.ports.get(streamable.track.index)
        if port is None:
            continue
        media.port = port
        media.connection = None
        if key is not None:  # SDES for players that join from the SDP alone (ffmpeg)
            media.proto = "RTP/SAVP"
            media.add("crypto", format_crypto(CryptoAttribute(1, key)))
    return write_sdp(description)


class MulticastSink:
    """An RTSP session's view of a shared send: the group it was told, stats of its host's receiver.

    Sends nothing: the session's packets and reports are the shared ones.
    """

    def __init__(self, sender: GroupSender, index: int, client_host: str) -> None:
        self.sender = sender
        self.index = index
        self.client_host = client_host
        self.description = sender.describe(index)

    def send_rtp(self, packet: bytes) -> None:
        return None

    def send_rtcp(self, packet: bytes) -> None:
        return None

    async def drain(self) -> None:
        return None

    @property
    def closed(self) -> bool:
        return False

    @property
    def reception(self) -> ReceptionReport:
        return self.sender.reception_for(self.index, self.client_host)


class MulticastService:
    """Every path's group and shared send; what the RTSP server and the web side ask about multicast."""

    def __init__(
        self,
        spec: MulticastRange | None,
        interface: str,
        always: Callable[[str], bool],
        cname_host: str,
        encrypted: Callable[[str], bool] = lambda path: False,
    ) -> None:
        self.spec = spec
        self.encrypted = encrypted  # whether a path's group is sent as SRTP (its encryption policy)
        self.interface = interface
        self.always = always
        self.cname_host = cname_host
        self.pool = GroupPool(spec) if spec is not None else None
        self.senders: dict[str, GroupSender] = {}  # by path name: the sender of the path online now
        self._sessions: dict[str, GroupSender] = {}  # RTSP session id -> the sender it set up on
        # worker processes: groups are the whole server's, one worker sends (streamd.workers)
        self.link: GroupLink | None = None
        self._grants: dict[str, Grant] = {}  # by path: the group as the parent gave it
        self._remote: dict[str, tuple[int, int]] = {}  # by path: other workers' (playing, setups)
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def enabled(self) -> bool:
        return self.spec is not None

    def refusal(self, live: bool) -> str | None:
        """Why a multicast SETUP cannot be honoured here (None: it can)."""
        if self.spec is None:
            return "multicast is disabled on this server (multicast_range is empty)"
        if not live:
            return "multicast is offered for live paths only; this path is on demand (use unicast UDP or TCP)"
        return None

    # --- RTSP sessions --------------------------------------------------------------------------

    def setup(
        self, live: LivePath, index: int, session_id: str, client_host: str, offer: TransportSpec
    ) -> tuple[TransportSpec, MulticastSink]:
        """The reply and sink for a multicast SETUP of one track (453 when the range is used up)."""
        assert self.spec is not None
        if offer.destination and not self.spec.contains(offer.destination):
            raise RtspError(
                403, f"destination {offer.destination} is outside the multicast range {self.spec.network}"
            )
        sender = self._sender(live)
        if index not in sender.tracks:
            raise RtspError(404, f"{live.name!r} has no track {index}")
        previous = self._sessions.get(session_id)
        if previous is not None and previous is not sender:
            raise RtspError(459, "this session is set up on another multicast send")
        sender.setups.add(session_id)
        self._sessions[session_id] = sender
        track = sender.tracks[index]
        source = self.interface if self.interface != "0.0.0.0" else None
        reply = TransportSpec(
            profile="RTP/SAVP" if sender.group_key() is not None else "RTP/AVP",
            lower_transport="UDP",
            cast="multicast",
            destination=sender.allocation.group,
            source=source,
            port=(track.port, track.port + 1),
            ttl=sender.ttl,
            ssrc=track.stream.ssrc,
        )
        return reply, MulticastSink(sender, index, client_host)

    def is_member(self, session_id: str) -> bool:
        return session_id in self._sessions

    def report_age(self, session_id: str, host: str) -> float | None:
        """Seconds since a receiver on ``host`` last reported to this session's group (None: never).

        RTCP keeps a multicast player's RTSP session alive, as it does a unicast one's (players
        such as VLC/live555 send no RTSP keep-alive). Reports carry no session id, so the client's
        host stands for it."""
        sender = self._sessions.get(session_id)
        if sender is None:
            return None
        heard = [
            r.last_seen
            for track in sender.tracks.values()
            for r in track.receivers.values()
            if r.address[0] == host
        ]
        return time.time() - max(heard) if heard else None

    def play(self, session_id: str) -> None:
        """A session plays: the send starts if it was not running (for the others it goes on).

        500 when the group's sockets cannot be opened (e.g. no route for multicast)."""
        sender = self._sessions.get(session_id)
        if sender is None or not sender.live.online:
            return
        sender.members.add(session_id)
        try:
            self._start(sender)
        finally:
            self._report(sender.live.name)

    def pause(self, session_id: str) -> None:
        sender = self._sessions.get(session_id)
        if sender is not None:
            sender.members.discard(session_id)
            self._maybe_stop(sender, "no RTSP member plays")
            self._report(sender.live.name)

    def leave(self, session_id: str) -> None:
        """The session ended (TEARDOWN, timeout, connection lost)."""
        sender = self._sessions.pop(session_id, None)
        if sender is None:
            return
        sender.members.discard(session_id)
        sender.setups.discard(session_id)
        self._maybe_stop(sender, "the last RTSP member left")
        self._collect(sender.live.name)
        self._report(sender.live.name)

    # --- the path's lifecycle ------------------------------------------------------------------

    def path_online(self, live: LivePath) -> None:
        """A path went live; with ``multicast = true`` its group send starts now."""
        if self.spec is None or not self.always(live.name):
            return
        if self.link is not None:  # the group is the parent's to give: asked in a task
            task = asyncio.get_running_loop().create_task(self._online_via_parent(live))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            return
        try:
            sender = self._sender(live)
        except RtspError as exc:
            log.error("%s: cannot send to multicast: %s", live.name, exc.reason)
            return
        sender.always = True
        with contextlib.suppress(RtspError):  # logged; the path stays up for unicast readers
            self._start(sender)

    async def _online_via_parent(self, live: LivePath) -> None:
        try:
            await self.prepare(live)
            if not live.online or not self._grants[live.name].here:
                return  # gone meanwhile, or another worker sends it (a relay each worker pulls)
            sender = self._sender(live)
        except RtspError as exc:
            log.error("%s: cannot send to multicast: %s", live.name, exc.reason)
            return
        sender.always = True
        with contextlib.suppress(RtspError):
            self._start(sender)
        self._report(live.name)

    def path_offline(self, live: LivePath) -> None:
        """The publisher left: BYE to the group; the group stays reserved while sessions hold it."""
        sender = self.senders.get(live.name)
        if sender is None or sender.live is not live:
            return
        sender.stop("the path went offline")
        del self.senders[live.name]
        self._collect(live.name)
        self._report(live.name)

    def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for sender in list(self.senders.values()):
            sender.stop("server shutting down")

    # --- worker processes: the parent's groups -------------------------------------------------

    async def prepare(self, live: LivePath) -> None:
        """Before a multicast SETUP (and a ``multicast = true`` path's send) with worker
        processes: the path's group as the parent gives it (one process: nothing to do)."""
        if self.link is None or self.spec is None:
            return
        grant = await self.link.hold(live)
        self._grants[live.name] = grant
        sender = self.senders.get(live.name)
        if sender is not None and sender.live is live and sender.mirror and not grant.here:
            sender.adopt(grant)  # the sending worker's send as it is now
        # a SETUP that fails after this leaves nothing held: looked at once the request is done
        asyncio.get_running_loop().call_soon(self._collect_and_report, live.name)

    def serve_for_others(self, live: LivePath, allocation: Allocation) -> dict[str, object]:
        """The parent names this worker the sender of ``live``'s group for another worker's
        readers: the send (made now if needed), and what they must know of it."""
        grant = self._grants.get(live.name)
        if grant is None or grant.allocation != allocation or not grant.here:
            self._grants[live.name] = Grant(allocation, here=True)
        sender = self._sender(live)
        asyncio.get_running_loop().call_soon(self._collect_and_report, live.name)
        key = sender.group_key()
        return {
            "ssrcs": {str(i): t.stream.ssrc for i, t in sender.tracks.items()},
            "seqs": {str(i): t.stream.next_seq for i, t in sender.tracks.items()},
            "key": key_message(key),
        }

    def remote_demand(self, path: str, playing: int, setups: int) -> None:
        """Other workers' sessions on our send of ``path``: it runs while any of them plays."""
        if playing or setups:
            self._remote[path] = (playing, setups)
        else:
            self._remote.pop(path, None)
        sender = self.senders.get(path)
        if sender is None or sender.mirror:
            return
        sender.remote_playing, sender.remote_setups = playing, setups
        if playing and sender.live.online and not sender.running:
            with contextlib.suppress(RtspError):  # logged; their players see no packets
                self._start(sender)
        elif not playing:
            self._maybe_stop(sender, "no RTSP member plays on any worker")
        self._collect_and_report(path)

    def sender_gone(self, path: str) -> None:
        """The worker that sent ``path``'s group died (the parent says)."""
        mirror = self.senders.get(path)
        if mirror is not None and mirror.mirror:
            log.warning("%s: the worker sending it is gone", mirror.label)
            mirror.sender_gone()

    def _collect_and_report(self, path: str) -> None:
        self._collect(path)
        self._report(path)

    def _report(self, path: str) -> None:
        if self.link is None:
            return
        mine = {id(s): s for s in self._sessions.values() if s.live.name == path}
        current = self.senders.get(path)
        if current is not None:
            mine[id(current)] = current
        held = bool(mine)
        playing = sum(len(s.members) for s in mine.values())
        setups = sum(len(s.setups) for s in mine.values())
        self.link.report(path, playing, setups, held)

    # --- the web side ----------------------------------------------------------------------------

    def announced(self, path: str) -> Allocation | None:
        """The group a player can join from the SDP alone right now (None: nothing is sent there)."""
        sender = self.senders.get(path)
        if sender is None or not (sender.running or sender.always):
            return None
        return sender.allocation

    def advertised(self, path: str) -> bool:
        """Whether the index page and API offer the path's multicast SDP (sent whenever online)."""
        sender = self.senders.get(path)
        return sender is not None and sender.always

    def snapshot(self) -> list[dict[str, object]]:
        sends = [s for s in self.senders.values() if not s.mirror]  # a mirror's send is another worker's
        return [s.as_dict() for s in sorted(sends, key=lambda s: s.live.name)]

    def sdp(
        self, path: str, presentation: Presentation, unicast_sdp: str, *, secure: bool = False
    ) -> str | None:
        """The path's SDP (``unicast_sdp``, the web side's) with the group in ``c=`` and each track's
        port in its ``m=`` line; None when nothing is sent to the group now.

        The absolute ``rtsp://`` controls stay: a player that prefers RTSP can still start a
        session from this file; one that joins the group ignores them.
        """
        allocation = self.announced(path)
        sender = self.senders.get(path)
        if allocation is None or sender is None:
            return None
        return group_sdp(allocation, sender.ttl, sender.group_key(), presentation, unicast_sdp, secure=secure)

    def announcements(self) -> dict[str, dict[str, object]]:
        """What another worker needs to give this worker's groups' SDP (worker processes)."""
        found: dict[str, dict[str, object]] = {}
        for path, sender in self.senders.items():
            allocation = self.announced(path)
            if allocation is None or sender.mirror:
                continue
            key = sender.group_key()
            found[path] = {
                "group": allocation.group,
                "ports": {str(i): p for i, p in allocation.ports.items()},
                "ttl": sender.ttl,
                "always": sender.always,
                "key": key_message(key),
            }
        return found

    # --- internals -------------------------------------------------------------------------------

    def _sender(self, live: LivePath) -> GroupSender:
        assert self.pool is not None and self.spec is not None
        sender = self.senders.get(live.name)
        if sender is not None and sender.live is live:
            return sender
        if sender is not None:  # the path's previous publisher: its send is over
            sender.stop("a new publisher took over the path")
        grant = self._grants.get(live.name) if self.link is not None else None
        if self.link is not None:
            if grant is None:
                raise RtspError(503, f"no multicast group for {live.name!r} from the parent process")
            allocation = grant.allocation
        else:
            try:
                allocation = self.pool.allocate(live.name, sorted(live.tracks))
            except PoolExhausted as exc:
                log.error("%s: no multicast group for it: %s", live.name, exc)
                raise RtspError(453, f"multicast range exhausted: {exc}") from None
        sender = GroupSender(
            live,
            allocation,
            self.spec.ttl,
            self.interface,
            f"streamd-{live.name}@{self.cname_host}",
            always=self.always(live.name),
            encrypted=self.encrypted(live.name),
            mirror=grant is not None and not grant.here,
        )
        if grant is not None and not grant.here:
            sender.adopt(grant)
        elif live.name in self._remote:
            sender.remote_playing, sender.remote_setups = self._remote[live.name]
        self.senders[live.name] = sender
        return sender

    def _start(self, sender: GroupSender) -> None:
        try:
            sender.start()
        except OSError as exc:
            log.error("%s: cannot send: %s", sender.label, exc)
            raise RtspError(500, f"cannot send to multicast group {sender.allocation.group}: {exc}") from None

    def _maybe_stop(self, sender: GroupSender, reason: str) -> None:
        if sender.running and not sender.members and not sender.remote_playing and not sender.always:
            sender.stop(reason)

    def _collect(self, path: str) -> None:
        """Give the path's group back once nothing holds it (a ``multicast = true`` path keeps it;
        with worker processes only while it is online here, so another worker may send it)."""
        if self.pool is None or (self.always(path) and self.link is None):
            return
        current = self.senders.get(path)
        if current is not None and (
            current.running
            or current.setups
            or current.remote_setups
            or (current.live.online and not current.mirror)  # a mirror is its sessions' only
        ):
            return
        if any(s.live.name == path for s in self._sessions.values()):
            return
        if current is not None:
            del self.senders[path]
        if self.link is not None:
            self._grants.pop(path, None)  # the parent lets the group go when no worker holds it
            return
        self.pool.release(path)
