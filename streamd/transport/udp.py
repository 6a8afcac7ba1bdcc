"""The server's shared UDP port pair: every UDP session sends RTP from one port and RTCP from the next.

One pair for all sessions (as MediaMTX does) keeps the socket count flat under load and gives
firewalls one rule. Incoming RTCP is routed to its session by the client's address; anything
else that arrives (ffmpeg's NAT-punching dummy packets, strays) is counted and ignored.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import struct
import sys
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


# UDP generic segmentation offload (Linux 4.18+): one sendmsg carries a run of equal-sized
# datagrams (all but the last exactly that size), cut apart by the kernel or the NIC. An access
# unit's fragments are such a run; on loopback it halves the cost per packet.
_SOL_UDP = getattr(socket, "SOL_UDP", 17)
_UDP_SEGMENT = 103
_SEGMENT = struct.Struct("=H")
_MAX_SEGMENTS = 64
_MAX_GSO_BYTES = 65000
_GSO = sys.platform == "linux" and os.environ.get("STREAMD_UDP_GSO", "1") != "0"


def _equal_run(packets: list[bytes], i: int) -> int:
    """End of the longest run from ``i`` that GSO can send: equal sizes, the last no larger."""
    size = len(packets[i])
    j, n, total = i + 1, len(packets), size
    while (
        j < n
        and len(packets[j - 1]) == size
        and len(packets[j]) <= size
        and j - i < _MAX_SEGMENTS
        and total + len(packets[j]) <= _MAX_GSO_BYTES
    ):
        total += len(packets[j])
        j += 1
    return j


class _Sender:
    """Sends datagrams straight on the non-blocking socket; the transport only takes the overflow.

    The kernel almost always takes a datagram at once, so the common case is one ``sendto``
    system call with no event-loop bookkeeping. When the socket buffer is full, the datagram is
    queued in the transport (which sends it when the socket is writable) and later datagrams
    follow it there, in order, until that queue is empty again.
    """

    def __init__(self, transport: asyncio.DatagramTransport) -> None:
        self.transport = transport
        raw = transport.get_extra_info("socket")
        # our own descriptor for the same socket: the loop's wrapper refuses (or warns on) sendto
        self._sock = socket.socket(fileno=os.dup(raw.fileno()))
        self._sock.setblocking(False)
        self._backlog = False
        self._gso = _GSO
        self.dropped = 0
        self.errors = 0

    def send(self, packet: bytes, addr: Address) -> None:
        if self._backlog:
            transport = self.transport
            if transport.is_closing():
                return
            if transport.get_write_buffer_size():
                if transport.get_write_buffer_size() > MAX_SEND_BUFFER:
                    self.dropped += 1
                else:
                    transport.sendto(packet, addr)
                return
            self._backlog = False
        try:
            self._sock.sendto(packet, addr)
        except (BlockingIOError, InterruptedError):
            if self.transport.is_closing():
                return
            self._backlog = True
            self.transport.sendto(packet, addr)
        except OSError as exc:  # e.g. an unreachable address: UDP is fire and forget
            self.errors += 1
            if self.errors == 1:
                log.debug("UDP send to %s failed: %s", addr, exc)

    def send_many(self, packets: list[bytes], addr: Address) -> None:
        """``send`` for each packet, in order; runs of equal-sized packets (an access unit's
        fragments) go out in one system call with UDP GSO where the kernel offers it."""
        if self._backlog:
            for packet in packets:
                self.send(packet, addr)
            return
        sock, n, i = self._sock, len(packets), 0
        try:
            while i < n:
                j = _equal_run(packets, i) if self._gso else i + 1
                if j - i == 1:
                    sock.sendto(packets[i], addr)
                elif not self._send_segmented(packets[i:j], addr):
                    continue  # GSO just turned out to be unavailable: this run one by one
                i = j
        except OSError:
            for rest in packets[i:]:  # the slow path decides: queue, count, or drop
                self.send(rest, addr)

    def _send_segmented(self, run: list[bytes], addr: Address) -> bool:
        """One datagram per packet, cut by the kernel from one buffer (``UDP_SEGMENT``).

        All or nothing: a full socket buffer raises BlockingIOError with nothing sent. False
        (and GSO off for good) if the kernel or the outgoing device cannot segment.
        """
        segment = [(_SOL_UDP, _UDP_SEGMENT, _SEGMENT.pack(len(run[0])))]
        try:
            self._sock.sendmsg([b"".join(run)], segment, 0, addr)
        except (BlockingIOError, InterruptedError):
            raise
        except OSError as exc:  # an old kernel, a device without checksum offload
            self._gso = False
            log.info("UDP segmentation offload unavailable (%s); sending packets one by one", exc)
            return False
        return True

    def close(self) -> None:
        self._sock.close()
        self.transport.close()


class UdpPair:
    """The RTP socket (even port) and the RTCP socket (port + 1)."""

    def __init__(
        self,
        on_rtcp: Callable[[bytes, Address], None],
        on_rtp: Callable[[bytes, Address], bool] | None = None,
    ) -> None:
        self._on_rtcp = on_rtcp
        self._on_rtp = on_rtp  # publishers' RTP; returns False for datagrams nobody expects
        self._rtp: _Sender | None = None
        self._rtcp: _Sender | None = None
        self.rtp_port = 0
        self.rtcp_port = 0
        self.ignored = 0
        self._closed = False

    async def open(self, host: str, rtp_port: int) -> None:
        loop = asyncio.get_running_loop()
        rtp_t, _ = await loop.create_datagram_endpoint(
            lambda: _Endpoint(self._on_rtp_datagram), local_addr=(host, rtp_port)
        )
        try:
            rtcp_t, _ = await loop.create_datagram_endpoint(
                lambda: _Endpoint(self._on_rtcp), local_addr=(host, rtp_port + 1)
            )
        except OSError:
            rtp_t.close()
            raise
        self._rtp, self._rtcp = _Sender(rtp_t), _Sender(rtcp_t)
        self.rtp_port = rtp_port
        self.rtcp_port = rtp_port + 1

    @property
    def dropped(self) -> int:
        """Datagrams dropped because the socket and the overflow queue were full."""
        return sum(s.dropped for s in (self._rtp, self._rtcp) if s is not None)

    def _on_rtp_datagram(self, data: bytes, addr: Address) -> None:
        if self._on_rtp is None or not self._on_rtp(data, addr):
            self.ignored += 1  # a NAT punch (ffmpeg sends one per port) or a stray

    def send_rtp(self, packet: bytes, addr: Address) -> None:
        if self._rtp is not None and not self._closed:
            self._rtp.send(packet, addr)

    def send_rtcp(self, packet: bytes, addr: Address) -> None:
        if self._rtcp is not None and not self._closed:
            self._rtcp.send(packet, addr)

    def close(self) -> None:
        self._closed = True
        for sender in (self._rtp, self._rtcp):
            if sender is not None:
                sender.close()


class UdpSink:
    """One track of one UDP session: the client's RTP/RTCP ports on the client's own host."""

    writable = True  # UDP never holds the sender back; a full socket buffer drops instead

    def __init__(self, pair: UdpPair, client_host: str, rtp_port: int, rtcp_port: int) -> None:
        self._pair = pair
        self.rtp_addr = (client_host, rtp_port)
        self.rtcp_addr = (client_host, rtcp_port)
        self.description = f"UDP {client_host}:{rtp_port}-{rtcp_port}"
        self._closed = False

    def send_rtp(self, packet: bytes) -> None:
        self._pair.send_rtp(packet, self.rtp_addr)

    def send_rtp_many(self, packets: list[bytes]) -> None:
        """An access unit's packets, back to back (one call for the lot on the hot path)."""
        pair, addr = self._pair, self.rtp_addr
        if pair._rtp is not None and not pair._closed:
            pair._rtp.send_many(packets, addr)

    def send_rtcp(self, packet: bytes) -> None:
        self._pair.send_rtcp(packet, self.rtcp_addr)

    async def drain(self) -> None:
        return None

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        self._closed = True
