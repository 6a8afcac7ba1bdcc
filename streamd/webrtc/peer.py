"""One WebRTC peer's transports: aiortc's ICE and DTLS, without its RTCPeerConnection.

aiortc's peer connection negotiates only the codecs it can encode itself (no VP9, AV1 or H.264
beyond constrained baseline) and its ``RTCRtpSender`` packetizes every frame for every peer.
We use aiortc's ORTC objects instead: ``RTCIceGatherer``/``RTCIceTransport`` (aioice: host
candidates, STUN/TURN, consent freshness) and ``RTCDtlsTransport`` (handshake, fingerprint check,
SRTP keys, and the receive loop that unprotects SRTCP and routes it by SSRC). Our own answer
(``negotiate.py``) names the SSRCs; packets already built once per path get their header
rewritten per viewer and go through :meth:`Peer.send_rtp`: the DTLS transport's SRTP session
protects them and the ICE pair's socket sends them, synchronously (aiortc's ``_send_rtp`` is a
coroutine per packet, too costly at a path's packet rate times its viewers).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Any

from aiortc import RTCCertificate, RTCDtlsTransport, RTCIceGatherer, RTCIceServer, RTCIceTransport
from aiortc.rtcdtlstransport import RTCDtlsFingerprint, RTCDtlsParameters
from aiortc.rtcicetransport import RTCIceParameters
from aiortc.sdp import candidate_from_sdp, candidate_to_sdp
from pylibsrtp._binding import ffi

from streamd.webrtc.ice_ports import bound_in
from streamd.webrtc.port_range import PortPicker

log = logging.getLogger(__name__)

_certificate: RTCCertificate | None = None


def certificate() -> RTCCertificate:
    """One DTLS certificate for the process (its fingerprint goes in every answer), made once:
    a key per peer would cost an EC key generation per POST."""
    global _certificate
    if _certificate is None:
        _certificate = RTCCertificate.generateCertificate()
    return _certificate


def ice_servers(urls: Sequence[str], username: str | None, credential: str | None) -> list[RTCIceServer]:
    return [RTCIceServer(urls=url, username=username, credential=credential) for url in urls]


class Peer:
    """ICE + DTLS to one remote peer. ``connect`` runs the checks and the handshake."""

    def __init__(self, servers: list[RTCIceServer], ports: PortPicker | None = None) -> None:
        self.ports = ports  # webrtc_udp_ports for the host candidates (None: ephemeral)
        # no servers means no STUN at all (aiortc would default to Google's: a wait offline)
        self.gatherer = RTCIceGatherer(iceServers=servers)
        self.ice = RTCIceTransport(self.gatherer)
        self.dtls = RTCDtlsTransport(self.ice, [certificate()])
        self._write: Callable[[bytes], Any] | None = None
        self.closed = False
        self.too_big = 0  # packets dropped because SRTP could not take them

    async def gather(self) -> None:
        """Gather our candidates; PortsExhausted when ``webrtc_udp_ports`` has no free port."""

        def host_ports() -> list[int]:
            return [c.port for c in self.gatherer.getLocalCandidates() if c.type == "host"]

        async with bound_in(self.ports, host_ports):
            await self.gatherer.gather()

    @property
    def ice_ufrag(self) -> str:
        return self.gatherer.getLocalParameters().usernameFragment

    @property
    def ice_pwd(self) -> str:
        return self.gatherer.getLocalParameters().password

    @staticmethod
    def fingerprint() -> tuple[str, str]:
        fp = next(f for f in certificate().getFingerprints() if f.algorithm == "sha-256")
        return fp.algorithm, fp.value

    def local_candidates(self) -> list[str]:
        return [candidate_to_sdp(c) for c in self.gatherer.getLocalCandidates()]

    async def add_remote_candidates(self, candidates: Sequence[str], end: bool) -> int:
        """Add the remote candidates we can read (others are skipped); how many were added."""
        added = 0
        for text in candidates:
            try:
                candidate = candidate_from_sdp(text)
            except (ValueError, IndexError):
                continue
            if candidate.ip.endswith(".local"):
                # a browser's mDNS name for a host address: resolving it (aioice would ask by
                # multicast) holds up the checks for seconds; the browser's own checks reach us
                # and make it a peer-reflexive candidate anyway
                continue
            candidate.sdpMid = "0"
            await self.ice.addRemoteCandidate(candidate)
            added += 1
        if end:
            await self.ice.addRemoteCandidate(None)
        return added

    async def connect(
        self, ufrag: str, pwd: str, ice_lite: bool, fingerprints: Sequence[tuple[str, str]], dtls_server: bool
    ) -> None:
        """ICE checks, then the DTLS handshake; ConnectionError with the reason when either fails."""
        await self.ice.start(RTCIceParameters(usernameFragment=ufrag, password=pwd, iceLite=ice_lite))
        if self.ice.state != "completed":
            raise ConnectionError("ICE found no working candidate pair")
        self.dtls._set_role("server" if dtls_server else "client")
        remote = RTCDtlsParameters(
            fingerprints=[RTCDtlsFingerprint(algorithm=a, value=v) for a, v in fingerprints]
        )
        await self.dtls.start(remote)
        if self.dtls.state != "connected":
            raise ConnectionError("the DTLS handshake failed (or the fingerprint did not match)")
        _roomier(self.dtls._tx_srtp)
        self._protect = self.dtls._tx_srtp.protect
        self._write = _datagram_writer(self.ice)

    def on_rtcp(self, ssrc: int, handler: Any) -> None:
        """Have the DTLS transport's receive loop hand RTCP about ``ssrc`` (RR, NACK, PLI, FIR) to
        ``handler._handle_rtcp_packet`` (the interface aiortc routes to its own senders)."""
        self.dtls._rtp_router.register_sender(handler, ssrc)

    def send_rtp(self, packet: bytes) -> bool:
        """SRTP-protect one RTP packet and send it; False when not connected (or too big)."""
        write = self._write
        if write is None:
            return False
        try:
            write(self._protect(packet))
        except ValueError:  # beyond SRTP_BUFFER: the path's packets are larger than any MTU
            self.too_big += 1
            return False
        return True

    def send_rtcp(self, packet: bytes) -> bool:
        write = self._write
        if write is None or self.closed:
            return False
        write(self.dtls._tx_srtp.protect_rtcp(packet))
        return True

    def backlog(self) -> int:
        """Bytes the socket could not take yet (the loop's datagram transport queues them)."""
        pair = _nominated(self.ice)
        transport = getattr(getattr(pair, "protocol", None), "transport", None)
        return transport.get_write_buffer_size() if transport is not None else 0

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._write = None  # nothing is sent from now on
        try:
            await self.dtls.stop()
        except Exception as exc:  # a half-made handshake may fail to shut down: it is gone anyway
            log.debug("DTLS stop: %s", exc)
        await self.ice.stop()


SRTP_BUFFER = 2048  # bytes; pylibsrtp's 1500 (minus 144 for its trailer) is less than RTSP's 1400 payloads


def _roomier(session: Any) -> None:
    """Let pylibsrtp protect packets up to ``SRTP_BUFFER`` bytes (its own buffer is 1,500 with room
    for a 144-byte trailer, so 1,356: less than the 1,400-byte payloads live paths are cut into)."""
    session._cdata = ffi.new("char[]", SRTP_BUFFER)
    session._buffer = ffi.buffer(session._cdata)


def _nominated(ice: RTCIceTransport) -> Any:
    return getattr(ice._connection, "_nominated", {}).get(1)


def _datagram_writer(ice: RTCIceTransport) -> Callable[[bytes], Any]:
    """A synchronous send on the selected pair's socket (what aioice's ``send`` awaits on)."""
    pair = _nominated(ice)
    transport = getattr(getattr(pair, "protocol", None), "transport", None)
    if pair is not None and transport is not None:
        address = pair.remote_addr
        is_closing, sendto = transport.is_closing, transport.sendto

        def write(data: bytes) -> None:
            if not is_closing():  # closed under us (ICE ended): asyncio would warn per packet
                sendto(data, address)

        return write
    send = ice._send  # another aioice: its coroutine, scheduled
    return lambda data: asyncio.ensure_future(send(data))
