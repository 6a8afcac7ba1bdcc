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
from dataclasses import dataclass, field

from benchmarks.impair.model import Impairment

Address = tuple[str, int]


@dataclass
class FlowCounters:
    """Ground truth for one forwarded socket: what the server sent and what the link dropped."""

    offered: int = 0
    dropped: int = 0
    duplicated: int = 0


class _RelaySocket(asyncio.DatagramProtocol):
    """One relay port: server packets go to ``receiver``, the receiver's go back to the server."""

    def __init__(self, relay: UdpRelay, receiver: Address) -> None:
        self.relay, self.receiver = relay, receiver
        self.server: Address | None = None
        self.transport: asyncio.DatagramTransport | None = None
        self.forward = FlowCounters()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: Address) -> None:
        if addr == self.receiver:
            if self.server is not None:
                self.relay.send(self.relay.backward, self, data, self.server, None)
        else:
            self.server = addr
            self.relay.send(self.relay.forward, self, data, self.receiver, self.forward)


@dataclass
class UdpRelay:
    forward: Impairment  # server -> receivers
    backward: Impairment  # receivers -> server
    host: str = "127.0.0.1"
    sockets: list[_RelaySocket] = field(default_factory=list)

    async def add(self, receiver: Address) -> _RelaySocket:
        """A relay port forwarding to ``receiver`` (and its traffic back to the server)."""
        loop = asyncio.get_running_loop()
        sock = _RelaySocket(self, receiver)
        await loop.create_datagram_endpoint(lambda: sock, local_addr=(self.host, 0))
        self.sockets.append(sock)
        return sock

    async def add_pair(self, rtp: Address, rtcp: Address) -> tuple[_RelaySocket, _RelaySocket]:
        """An RTP/RTCP pair of relay ports on consecutive numbers (an even RTP port, as RFC 3550 asks)."""
        loop = asyncio.get_running_loop()
        for _ in range(100):
            first = _RelaySocket(self, rtp)
            transport, _ = await loop.create_datagram_endpoint(lambda f=first: f, local_addr=(self.host, 0))
            port = transport.get_extra_info("sockname")[1]
            if port % 2 == 0:
                second = _RelaySocket(self, rtcp)
                try:
                    await loop.create_datagram_endpoint(lambda s=second: s, local_addr=(self.host, port + 1))
                except OSError:
                    transport.close()
                    continue
                self.sockets += [first, second]
                return first, second
            transport.close()
        raise RuntimeError("no free UDP port pair for the relay")

    def send(
        self, link: Impairment, via: _RelaySocket, data: bytes, to: Address, counters: FlowCounters | None
    ) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        times = link.process(now, len(data))
        if counters is not None:
            counters.offered += 1
            counters.dropped += not times
            counters.duplicated += len(times) > 1
        for at in times:
            transport = via.transport
            if transport is None:
                continue
            if at <= now:
                transport.sendto(data, to)
            else:
                loop.call_at(at, _send_if_open, transport, data, to)

    def close(self) -> None:
        for sock in self.sockets:
            if sock.transport is not None:
                sock.transport.close()


def _send_if_open(transport: asyncio.DatagramTransport, data: bytes, to: Address) -> None:
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
