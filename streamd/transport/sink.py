"""Where one track's packets go: a UDP address pair or two channels of an RTSP/TCP connection.

The pacing loop only sees this interface, so it does not care how a client receives.
"""

from __future__ import annotations

from typing import Protocol


class PacketSink(Protocol):
    description: str  # for logs, e.g. "UDP 10.0.0.2:5000-5001" or "TCP interleaved 0-1"

    def send_rtp(self, packet: bytes) -> None: ...

    def send_rtp_many(self, packets: list[bytes]) -> None:
        """Several packets back to back, in order (one call on the hot path). Optional: the
        pacing loop falls back to ``send_rtp`` per packet for sinks without it."""
        ...

    def send_rtcp(self, packet: bytes) -> None: ...

    async def drain(self) -> None:
        """Wait while the way to the client is congested (TCP); returns at once for UDP."""
        ...

    @property
    def writable(self) -> bool:
        """False while sending should wait for ``drain`` (a TCP connection above its high-water
        mark); always True for UDP. Optional: a sink without it is taken as always writable."""
        ...

    @property
    def closed(self) -> bool: ...
