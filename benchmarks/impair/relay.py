"""Asyncio relays that put an ``Impairment`` between a server and its receivers.

UDP: the receiver announces the relay's ports as its ``client_port`` in SETUP, so the server
sends RTP and RTCP to the relay, which forwards them (impaired) to the receiver's real sockets.
The receiver's RTCP goes back to the relay's RTCP port and leaves from there, so the server sees
it come from the address it expects. Nothing in RTSP is rewritten: that is why this design was
chosen over an RTSP-aware proxy. One ``Impairment`` per direction is shared by every flow: the
relay is one link, so a bottleneck is shared as on a real access line.

TCP: a byte-stream proxy (for RTSP with interleaved RTP). TCP cannot lose, so only delay,
jitter (in order) and rate apply; each read chunk is one "packet" of the model.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import time
from dataclasses import dataclass, field

from benchmarks.impair.model import Impairment

Address = tuple[str, int]
_SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)  # Linux; Python does not always export it
_STAMP_SPACE = socket.CMSG_SPACE(16)
_REALTIME_TO_MONOTONIC = time.time() - time.monotonic()  # kernel stamps are CLOCK_REALTIME


@dataclass
class FlowCounters:
    """Ground truth for one forwarded socket: what the server sent and what the link dropped."""

    offered: int = 0
    dropped: int = 0
    duplicated: int = 0


class _RelaySocket:
    """One relay port: server packets go to ``receiver``, the receiver's go back to the server.

    A raw non-blocking socket read by the relay (``UdpRelay.poll``) with the kernel's arrival
    stamps, not an asyncio datagram transport: that reads one datagram per wake-up and socket,
    so two flows' bursts queued at the same moment were offered to the link interleaved, packet
    by packet, whatever order the server sent them in (``benchmarks/README.md``, "Precise pacing")."""

    def __init__(self, relay: UdpRelay, receiver: Address, sock: socket.socket) -> None:
        self.relay, self.receiver, self.sock = relay, receiver, sock
        self.server: Address | None = None
        self.transport: _RelaySocket | None = self  # what callers used of the asyncio transport
        self.forward = FlowCounters()
        self.port: int = sock.getsockname()[1]
        self._closing = False
        sock.setblocking(False)
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, _SO_TIMESTAMPNS, 1)
        asyncio.get_running_loop().add_reader(sock.fileno(), relay.poll)

    def read(self, into: list[tuple[float, int, _RelaySocket, bytes, Address]]) -> None:
        """Everything queued on this socket, as (kernel arrival on the loop's clock, order, self,
        data, sender)."""
        for _ in range(1024):  # bounded: one flooded port cannot hold the loop forever
            try:
                data, ancillary, _, addr = self.sock.recvmsg(65536, _STAMP_SPACE)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            at = None
            for level, kind, raw in ancillary:
                if level == socket.SOL_SOCKET and kind == _SO_TIMESTAMPNS and len(raw) >= 16:
                    sec, nsec = struct.unpack_from("qq", raw)
                    at = sec + nsec * 1e-9 - _REALTIME_TO_MONOTONIC
            into.append((time.monotonic() if at is None else at, len(into), self, data, addr))

    def datagram_received(self, data: bytes, addr: Address, at: float) -> None:
        if addr == self.receiver:
            if self.server is not None:
                self.relay.send(self.relay.backward, self, data, self.server, None, at)
        else:
            self.server = addr
            self.relay.send(self.relay.forward, self, data, self.receiver, self.forward, at)

    # the part of asyncio.DatagramTransport that callers use
    def get_extra_info(self, name: str) -> object:
        return self.sock.getsockname() if name == "sockname" else None

    def sendto(self, data: bytes, to: Address) -> None:
        with contextlib.suppress(OSError):
            self.sock.sendto(data, to)

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        if not self._closing:
            self._closing = True
            asyncio.get_running_loop().remove_reader(self.sock.fileno())
            self.sock.close()


@dataclass
class UdpRelay:
    forward: Impairment  # server -> receivers
    backward: Impairment  # receivers -> server
    host: str = "127.0.0.1"
    sockets: list[_RelaySocket] = field(default_factory=list)
    # when set, every server -> receiver datagram as offered to the link: (time, relay port, size,
    # the first 12 bytes); ``benchmarks.impair.trace`` replays these through the model offline
    trace: list[tuple[float, int, int, bytes]] | None = None

    async def add(self, receiver: Address) -> _RelaySocket:
        """A relay port forwarding to ``receiver`` (and its traffic back to the server)."""
        sock = _RelaySocket(self, receiver, _bound(self.host, 0))
        self.sockets.append(sock)
        return sock

    async def add_pair(self, rtp: Address, rtcp: Address) -> tuple[_RelaySocket, _RelaySocket]:
        """An RTP/RTCP pair of relay ports on consecutive numbers (an even RTP port, as RFC 3550 asks)."""
        for _ in range(100):
            sock = _bound(self.host, 0)
            port = sock.getsockname()[1]
            if port % 2 == 0:
                try:
                    other = _bound(self.host, port + 1)
                except OSError:
                    sock.close()
                    continue
                first, second = _RelaySocket(self, rtp, sock), _RelaySocket(self, rtcp, other)
                self.sockets += [first, second]
                return first, second
            sock.close()
        raise RuntimeError("no free UDP port pair for the relay")

    def poll(self) -> None:
        """Offer what every port holds to the link in the order the kernel received it: one FIFO,
        as the server's packets would meet a real bottleneck."""
        queued: list[tuple[float, int, _RelaySocket, bytes, Address]] = []
        for sock in self.sockets:
            if not sock.is_closing():
                sock.read(queued)
        queued.sort(key=lambda item: item[:2])
        for at, _, sock, data, addr in queued:
            sock.datagram_received(data, addr, at)

    def send(
        self,
        link: Impairment,
        via: _RelaySocket,
        data: bytes,
        to: Address,
        counters: FlowCounters | None,
        now: float,
    ) -> None:
        """Offer ``data`` (arrived at ``now``, the loop's clock) to ``link`` and forward it on time."""
        loop = asyncio.get_running_loop()
        if self.trace is not None and link is self.forward:
            self.trace.append((now, via.port, len(data), data[:12]))
        times = link.process(now, len(data))
        if counters is not None:
            counters.offered += 1
            counters.dropped += not times
            counters.duplicated += len(times) > 1
        for at in times:
            transport = via.transport
            if transport is None:
                continue
            if at <= loop.time():
                transport.sendto(data, to)
            else:
                loop.call_at(at, _send_if_open, transport, data, to)

    def close(self) -> None:
        for sock in self.sockets:
            if sock.transport is not None:
                sock.transport.close()


def _bound(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


def _send_if_open(transport: _RelaySocket, data: bytes, to: Address) -> None:
    if not transport.is_closing():
        transport.sendto(data, to)


@dataclass
class TcpRelay:
    """Listens on ``port``; each connection is proxied to ``target`` through the two impairments."""

    target: Address
    forward: Impairment  # target -> client
    backward: Impairment  # client -> target
    host: str = "127.0.0.1"
    port: int = 0
    _server: asyncio.Server | None = None
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    def __post_init__(self) -> None:
        for link in (self.forward, self.backward):
            p = link.profile
            if p.loss or p.burst or p.duplicate or p.reorder or not p.keep_order:
                raise ValueError("a TCP byte stream can only be delayed, jittered in order, or rate-limited")

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._accept, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def _accept(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            target_r, target_w = await asyncio.open_connection(*self.target)
        except OSError:
            client_w.close()
            return
        pumps = [
            asyncio.create_task(_pump(client_r, target_w, self.backward)),
            asyncio.create_task(_pump(target_r, client_w, self.forward)),
        ]
        self._tasks.update(pumps)
        await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        for task in pumps:
            task.cancel()
            self._tasks.discard(task)
        for writer in (client_w, target_w):
            writer.close()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, link: Impairment) -> None:
    """Copy bytes, each chunk released at the model's time (in order: the profile keeps order)."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue()

    async def writer_task() -> None:
        while (item := await queue.get()) is not None:
            at, data = item
            delay = at - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            writer.write(data)
            await writer.drain()

    drain = asyncio.create_task(writer_task())
    try:
        while data := await reader.read(65536):
            for at in link.process(loop.time(), len(data)):
                queue.put_nowait((at, data))
        queue.put_nowait(None)
        await drain
    finally:
        drain.cancel()
        with contextlib.suppress(Exception):
            writer.close()
