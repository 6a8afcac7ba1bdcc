"""Sockets of one track's multicast send: RTP out to group:port, RTCP out to and in from group:port+1.

RTP leaves from an ephemeral port that joins nothing, so the host's own players never fill its
receive buffer. The RTCP socket is bound to group:port+1 and joins the group there: our sender
reports leave from it, and the receivers' reports (which RFC 3550 players send to the group's
RTCP port) arrive on it. TTL, the outgoing interface and loopback are always set explicitly,
never left to system defaults: loopback is on so players on the server's own host receive.
Sends never block: a full socket buffer drops the packet and counts it.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
from collections.abc import Callable

log = logging.getLogger(__name__)

Address = tuple[str, int]
MAX_READS_PER_WAKEUP = 64  # RTCP datagrams read per readiness callback (then the loop gets a turn)
RECEIVE_BUFFER = 64 * 1024


def multicast_interface(configured: str | None, listen_host: str) -> str:
    """The IPv4 address whose interface sends and joins: the configured one, else the RTSP host."""
    for candidate in (configured, listen_host):
        if candidate:
            try:
                socket.inet_aton(candidate)
            except OSError:
                continue
            if candidate.count(".") == 3:
                return candidate
    return "0.0.0.0"


def _sender_options(sock: socket.socket, interface: str, ttl: int) -> None:
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, ttl)
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(interface))
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1)


class GroupSockets:
    """RTP and RTCP of one track to one group. ``on_rtcp(data, source)`` gets every RTCP datagram."""

    def __init__(
        self, group: str, port: int, ttl: int, interface: str, on_rtcp: Callable[[bytes, Address], None]
    ) -> None:
        self.group = group
        self.port = port
        self.ttl = ttl
        self.interface = interface
        self._on_rtcp = on_rtcp
        self._rtp: socket.socket | None = None
        self._rtcp: socket.socket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.dropped = 0
        self._warned = False

    @property
    def rtp_addr(self) -> Address:
        return (self.group, self.port)

    @property
    def rtcp_addr(self) -> Address:
        return (self.group, self.port + 1)

    def open(self) -> None:
        """Create both sockets and start reading RTCP (on the running loop); OSError if that fails."""
        rtp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        rtcp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            _sender_options(rtp, self.interface, self.ttl)
            rtp.bind((self.interface, 0))
            rtp.setblocking(False)
            _sender_options(rtcp, self.interface, self.ttl)
            rtcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            rtcp.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
            rtcp.bind(self.rtcp_addr)  # only this group's datagrams, not every group on the port
            membership = struct.pack("4s4s", socket.inet_aton(self.group), socket.inet_aton(self.interface))
            rtcp.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, membership)
            rtcp.setblocking(False)
        except OSError:
            rtp.close()
            rtcp.close()
            raise
        self._rtp, self._rtcp = rtp, rtcp
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(rtcp.fileno(), self._read_rtcp)

    def _read_rtcp(self) -> None:
        sock = self._rtcp
        for _ in range(MAX_READS_PER_WAKEUP):
            if sock is None:
                return
            try:
                data, source = sock.recvfrom(2048)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                log.debug("multicast RTCP %s:%d: %s", self.group, self.port + 1, exc)
                return
            self._on_rtcp(data, (source[0], source[1]))

    def send_rtp(self, packet: bytes) -> None:
        self._send(self._rtp, packet, self.rtp_addr)

    def send_rtcp(self, packet: bytes) -> None:
        self._send(self._rtcp, packet, self.rtcp_addr)

    def _send(self, sock: socket.socket | None, packet: bytes, addr: Address) -> None:
        if sock is None:
            return
        try:
            sock.sendto(packet, addr)
        except (BlockingIOError, InterruptedError):
            self.dropped += 1
        except OSError as exc:
            self.dropped += 1
            if not self._warned:
                self._warned = True
                log.warning("multicast send to %s:%d failed: %s (dropping)", addr[0], addr[1], exc)

    def close(self) -> None:
        if self._rtcp is not None:
            if self._loop is not None and not self._loop.is_closed():
                self._loop.remove_reader(self._rtcp.fileno())
            self._rtcp.close()
        if self._rtp is not None:
            self._rtp.close()
        self._rtp = self._rtcp = None
