"""Where one viewer's track goes: the packet sink of live readers and file playback, over SRTP.

Live readers and file playback build RTP packets with their own ``OutgoingStream`` (SSRC,
sequence, timestamp, and the browser's payload type, on the path's shared payloads); the SSRC
is the one our answer announced. The peer's SRTP session protects each packet as it is. NACKs
of a live path's viewer are answered from the path's shared history (``sequence``, set by the
live reader: :mod:`streamd.webrtc.nack`); a file's viewer, whose packets are its own, keeps its
last video packets (bounded). PLI and FIR go to the session, which knows how to make a keyframe
come.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from aiortc.rtp import RTCP_PSFB_FIR, RTCP_PSFB_PLI, RTCP_RTPFB_NACK, RtcpPsfbPacket, RtcpRtpfbPacket

from streamd.webrtc.nack import MAX_PER_NACK, Bucket, ViewerSequence, lost_sequences
from streamd.webrtc.peer import Peer

log = logging.getLogger(__name__)

HISTORY = 512  # video packets a file's viewer keeps per track for NACKs (~0.5 s at 4 Mbit/s)
MAX_BACKLOG = 1 << 20  # bytes the socket may hold back before this viewer counts as congested


class Renumbered:
    """A path's payload format under the browser's payload type number: the viewer's
    ``OutgoingStream`` writes that number in its header, so packets need no rewriting after."""

    def __init__(self, inner: object, payload_type: int) -> None:
        self._inner = inner
        self.payload_type = payload_type

    def __getattr__(self, name: str) -> object:
        return getattr(self._inner, name)


class WebrtcSink:
    """One track of one viewer (the ``PacketSink`` interface)."""

    def __init__(
        self,
        peer: Peer,
        payload_type: int,
        *,
        video: bool,
        on_keyframe_request: Callable[[], None] | None = None,
    ) -> None:
        self.peer = peer
        self.payload_type = payload_type
        self.description = f"WebRTC PT {payload_type}"
        self.video = video
        self.on_keyframe_request = on_keyframe_request
        self.history: dict[int, bytes] = {}  # a file's viewer's own (a live one has ``sequence``)
        self.sequence: ViewerSequence | None = None
        self.bucket = Bucket()  # a file's viewer's resends per second
        self.sent = 0
        self.retransmitted = 0
        self.keyframe_requests = 0
        self.nacks = 0

    # --- PacketSink ---------------------------------------------------------------------------

    def send_rtp(self, packet: bytes) -> None:
        """One packet, already numbered with the browser's payload type (see :class:`Renumbered`)."""
        if self.peer.send_rtp(packet):
            self.sent += 1
            if self.video and self.sequence is None:
                seq = (packet[2] << 8) | packet[3]
                history = self.history
                history[seq] = packet
                if len(history) > HISTORY:
                    del history[next(iter(history))]

    def send_rtp_many(self, packets: list[bytes]) -> None:
        for packet in packets:
            self.send_rtp(packet)

    def send_rtcp(self, packet: bytes) -> None:
        self.peer.send_rtcp(packet)

    async def drain(self) -> None:
        return None

    @property
    def congested(self) -> bool:
        return self.peer.backlog() > MAX_BACKLOG

    @property
    def closed(self) -> bool:
        return self.peer.closed

    # --- RTCP from the viewer (aiortc's router calls this) --------------------------------------

    async def _handle_rtcp_packet(self, packet: object) -> None:
        self.feedback(packet)

    def feedback(self, packet: object) -> None:
        if isinstance(packet, RtcpRtpfbPacket) and packet.fmt == RTCP_RTPFB_NACK:
            self.nacks += 1
            now = time.monotonic()
            if self.sequence is not None:
                resend = self.sequence.answer(packet.lost, now)
            else:
                kept = (self.history.get(seq) for seq in lost_sequences(packet.lost)[:MAX_PER_NACK])
                resend = [old for old in kept if old is not None and self.bucket.take(now)]
            for old in resend:
                if self.peer.send_rtp(old):
                    self.retransmitted += 1
        elif isinstance(packet, RtcpPsfbPacket) and packet.fmt in (RTCP_PSFB_PLI, RTCP_PSFB_FIR):
            self.keyframe_requests += 1
            if self.on_keyframe_request is not None:
                self.on_keyframe_request()
