"""Issue 12 item 2 against the real server: a session id is not enough to act on someone's session.

Before: from a second connection TEARDOWN, PAUSE and GET_PARAMETER with the victim's id answered
200, and a re-SETUP moved the victim's UDP stream to the attacker's port. Now they get 454 and the
victim keeps receiving."""

from __future__ import annotations

import asyncio
import socket

import pytest

from tests.integration.conftest import ServerProcess
from tests.rtsp_client import RawRtspClient

pytestmark = pytest.mark.integration


async def _connect_from(source: str, server: ServerProcess) -> RawRtspClient:
    client = RawRtspClient("127.0.0.1", server.port)
    client._reader, client._writer = await asyncio.open_connection(
        "127.0.0.1", server.port, local_addr=(source, 0)
    )
    client._task = asyncio.create_task(client._read_loop())
    return client


async def _frames_grow(client: RawRtspClient) -> None:
    before = len(client.received.frames)
    for _ in range(500):
        if len(client.received.frames) > before:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the victim stopped receiving")


async def test_another_connection_gets_454_and_the_victim_plays_on(server: ServerProcess) -> None:
    victim = await RawRtspClient("127.0.0.1", server.port).connect()
    attacker = await RawRtspClient("127.0.0.1", server.port).connect()
    try:
        assert (await victim.request("DESCRIBE", victim.url("ten.mp4"))).status == 200
        tcp = {"Transport": "RTP/AVP/TCP;unicast;interleaved=0-1"}
        assert (await victim.request("SETUP", victim.url("ten.mp4/trackID=0"), tcp)).status == 200
        assert (await victim.request("PLAY", victim.url("ten.mp4"))).status == 200
        stolen = {"Session": victim.session or ""}
        for method in ("TEARDOWN", "PAUSE", "GET_PARAMETER", "SET_PARAMETER", "PLAY"):
            response = await attacker.request(method, attacker.url("ten.mp4"), stolen)
            assert response.status == 454, method
        await _frames_grow(victim)
        assert (await victim.request("GET_PARAMETER", victim.url("ten.mp4"))).status == 200
    finally:
        await victim.close()
        await attacker.close()


async def test_a_udp_session_cannot_be_moved_from_another_address(server: ServerProcess) -> None:
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", 0))
    sink.setblocking(False)
    port = sink.getsockname()[1]
    victim = await RawRtspClient("127.0.0.1", server.port).connect()
    attacker = await _connect_from("127.0.0.2", server)
    try:
        await victim.request("DESCRIBE", victim.url("ten.mp4"))
        udp = {"Transport": f"RTP/AVP;unicast;client_port={port}-{port + 1}"}
        assert (await victim.request("SETUP", victim.url("ten.mp4/trackID=0"), udp)).status == 200
        assert (await victim.request("PLAY", victim.url("ten.mp4"))).status == 200
        moved = {"Session": victim.session or "", "Transport": "RTP/AVP;unicast;client_port=9000-9001"}
        assert (await attacker.request("SETUP", attacker.url("ten.mp4/trackID=0"), moved)).status == 454
        stolen = {"Session": victim.session or ""}
        assert (await attacker.request("TEARDOWN", attacker.url("ten.mp4"), stolen)).status == 454
        loop = asyncio.get_running_loop()
        data = await asyncio.wait_for(loop.sock_recv(sink, 2048), 10)
        assert data, "RTP still reaches the victim"
    finally:
        await victim.close()
        await attacker.close()
        sink.close()
