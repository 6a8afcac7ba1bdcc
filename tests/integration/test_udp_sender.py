"""The shared UDP sender delivers every packet once, in order, whatever the run shapes (GSO or not)."""

from __future__ import annotations

import asyncio
import socket

import pytest

from streamd.transport.udp import UdpPair, UdpSink
from tests.integration.conftest import free_udp_pair


@pytest.mark.parametrize("gso", [True, False])
async def test_send_many_delivers_in_order(gso: bool) -> None:
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.bind(("127.0.0.1", 0))
    receiver.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    receiver.settimeout(2)
    pair = UdpPair(lambda data, addr: None)
    await pair.open("127.0.0.1", free_udp_pair())
    try:
        assert pair._rtp is not None
        pair._rtp._gso = pair._rtp._gso and gso
        sink = UdpSink(pair, "127.0.0.1", receiver.getsockname()[1], receiver.getsockname()[1] + 1)
        shapes = [[40, 1400, 1400, 900], [1400] * 50, [300], [1400, 300, 1400, 1400], [1000] * 70]
        sent = []
        for n, shape in enumerate(shapes):
            packets = [bytes([n, i % 256]) + bytes(size - 2) for i, size in enumerate(shape)]
            sink.send_rtp_many(packets)
            sent += packets
            await asyncio.sleep(0)
        got = [receiver.recv(65536) for _ in sent]
        assert got == sent
        assert pair.dropped == 0
    finally:
        pair.close()
        receiver.close()
