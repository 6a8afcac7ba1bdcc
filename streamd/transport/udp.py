"""The server's shared UDP port pair: every UDP session sends RTP from one port and RTCP from the next.

One pair for all sessions (as MediaMTX does) keeps the socket count flat under load and gives
firewalls one rule. Incoming RTCP is routed to its session by the client's address; anything
else that arrives (ffmpeg's NAT-punching dummy packets, strays) is counted and ignored.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

log = logging.getLogger(__name__)

Address = tuple[str, int]
MAX_SEND_BUFFER = 4 * 1024 * 1024  # bytes queued in asyncio before we drop (UDP may drop anyway)


class _Endpoint(asyncio.DatagramProtocol):
    def __init__(self, on_datagram: Callable[[bytes, Address], None]) -> None:
        self.on_datagram = on_datagram
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple) -> None:
        self.on_datagram(data, (addr[0], addr[1]))

    def error_received(self, exc: Exception) -> None:
        log.debug("UDP error: %s", exc)


class UdpPair:
    """The RTP socket (even port) and the RTCP socket (port + 1)."""

    def __init__(
        self,
        on_rtcp: Callable[[bytes, Address], None],
        on_rtp: Callable[[bytes, Address], bool] | None = None,
    ) -> None:
        self._on_rtcp = on_rtcp
        self._on_rtp = on_rtp  # publishers' RTP; returns False for datagrams nobody expects
        self._rtp: _Endpoint | None = None
        self._rtcp: _Endpoint | None = None
        self.rtp_port = 0
        self.rtcp_port = 0
        self.dropped = 0
        self.ignored = 0

    async def open(self, host: str, rtp_port: int) -> None:
        loop = asyncio.get_running_loop()
        rtp_t, self._rtp = await loop.create_datagram_endpoint(
            lambda: _Endpoint(self._on_rtp_datagram), local_addr=(host, rtp_port)
        )
        try:
            _, self._rtcp = await loop.create_datagram_endpoint(
                lambda: _Endpoint(self._on_rtcp), local_addr=(host, rtp_port + 1)
            )
        except OSError:
            rtp_t.close()
            raise
        self.rtp_port = rtp_port
        self.rtcp_port = rtp_port + 1

    def _on_rtp_datagram(self, data: bytes, addr: Address) -> None:
        if self._on_rtp is None or not self._on_rtp(data, addr):
            self.ignored += 1  # a NAT punch (ffmpeg sends one per port) or a stray

    def send_rtp(self, packet: bytes, addr: Address) -> None:
        self._send(self._rtp, packet, addr)

    def send_rtcp(self, packet: bytes, addr: Address) -> None:
        self._send(self._rtcp, packet, addr)

    def _send(self, endpoint: _Endpoint | None, packet: bytes, addr: Address) -> None:
        transport = endpoint.transport if endpoint else None
        if transport is None or transport.is_closing():
            return
        if transport.get_write_buffer_size() > MAX_SEND_BUFFER:
            self.dropped += 1
            return
        transport.sendto(packet, addr)

    def close(self) -> None:
        for endpoint in (self._rtp, self._rtcp):
            if endpoint and endpoint.transport:
                endpoint.transport.close()


class UdpSink:
    """One track of one UDP session: the client's RTP/RTCP ports on the client's own host."""

    def __init__(self, pair: UdpPair, client_host: str, rtp_port: int, rtcp_port: int) -> None:
        self._pair = pair
        self.rtp_addr = (client_host, rtp_port)
        self.rtcp_addr = (client_host, rtcp_port)
        self.description = f"UDP {client_host}:{rtp_port}-{rtcp_port}"
        self._closed = False

    def send_rtp(self, packet: bytes) -> None:
        self._pair.send_rtp(packet, self.rtp_addr)

    def send_rtcp(self, packet: bytes) -> None:
        self._pair.send_rtcp(packet, self.rtcp_addr)

    async def drain(self) -> None:
        return None

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        self._closed = True
