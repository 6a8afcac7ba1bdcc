"""A WebRTC peer without a network, for the sink and NACK tests: it records what is sent."""

from __future__ import annotations


class FakePeer:
    def __init__(self) -> None:
        self.sent: list[bytes] = []  # RTP packets, in the order sent
        self.rtcp: list[bytes] = []
        self.closed = False

    def send_rtp(self, packet: bytes) -> bool:
        self.sent.append(packet)
        return True

    def send_rtcp(self, packet: bytes) -> bool:
        self.rtcp.append(packet)
        return True

    def backlog(self) -> int:
        return 0
