"""Issue 12, item 3: one publisher must not freeze the event loop for everyone else.

Attack: ANNOUNCE ``mpeg4-generic`` with 1-bit AU sizes, so one 65 kB RTP packet carries 58,000
one-byte AUs, each fanned out to every reader as an RTP packet of its own; or valid AAC-hbr
packets with the most AUs their header allows (4,095), as fast as TCP takes them.
"""

from __future__ import annotations

import asyncio
import struct
import time
from collections.abc import Iterator

import pytest

from tests import mediagen
from tests.integration.conftest import ServerProcess, start_server, stop_all
from tests.rtsp_client import RawRtspClient

pytestmark = pytest.mark.integration

AAC = "m=audio 0 RTP/AVP 96\r\na=rtpmap:96 mpeg4-generic/48000/2\r\na=fmtp:96 streamtype=5;config=1190;{}\r\n"
HBR = "mode=AAC-hbr;sizelength=13;indexlength=3;indexdeltalength=3"
MAX_UNITS_PER_PACKET = 256  # streamd/rtp/payload/base.py


@pytest.fixture(scope="module")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    media = tmp_path_factory.mktemp("hostile-media")
    mediagen.make_h264_aac_mp4(media / "clip.mp4", seconds=2)
    proc = start_server(media, tmp_path_factory.mktemp("hostile-server"))
    yield proc
    stop_all(proc)


def _sdp(fmtp: str) -> bytes:
    head = "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=x\r\nt=0 0\r\n"
    return f"{head}{AAC.format(fmtp)}a=control:trackID=0\r\n".encode()


def _hbr_packet(seq: int, units: int) -> bytes:
    """Interleaved RTP (channel 0) with ``units`` one-byte AAC-hbr AUs."""
    headers = struct.pack("!H", units * 16) + struct.pack("!H", 1 << 3) * units
    rtp = struct.pack("!BBHII", 0x80, 0x80 | 96, seq & 0xFFFF, seq * 1024, 0x1234) + headers + b"\x21" * units
    return b"$\x00" + struct.pack("!H", len(rtp)) + rtp


async def _publisher(server: ServerProcess, path: str) -> RawRtspClient:
    c = await RawRtspClient("127.0.0.1", server.port).connect()
    headers = {"Content-Type": "application/sdp"}
    assert (await c.request("ANNOUNCE", c.url(path), headers, _sdp(HBR))).status == 200
    transport = {"Transport": "RTP/AVP/TCP;unicast;interleaved=0-1;mode=record"}
    assert (await c.request("SETUP", c.url(f"{path}/trackID=0"), transport)).status == 200
    assert (await c.request("RECORD", c.url(path))).status == 200
    return c


async def _reader(server: ServerProcess, path: str) -> RawRtspClient:
    c = await RawRtspClient("127.0.0.1", server.port).connect()
    assert (await c.request("DESCRIBE", c.url(path))).status == 200
    transport = {"Transport": "RTP/AVP/TCP;unicast;interleaved=0-1"}
    assert (await c.request("SETUP", c.url(f"{path}/trackID=0"), transport)).status == 200
    assert (await c.request("PLAY", c.url(path))).status == 200
    return c


async def _options_seconds(server: ServerProcess) -> float:
    c = await RawRtspClient("127.0.0.1", server.port).connect()
    begin = time.monotonic()
    assert (await c.request("OPTIONS", "*")).status == 200
    elapsed = time.monotonic() - begin
    await c.close()
    return elapsed


def test_one_bit_au_sizes_are_refused_at_announce(live_server: ServerProcess) -> None:
    async def scenario() -> None:
        c = await RawRtspClient("127.0.0.1", live_server.port).connect()
        headers = {"Content-Type": "application/sdp"}
        for fmtp in ("sizelength=1;indexlength=0;indexdeltalength=0", "mode=AAC-hbr;sizelength=6"):
            response = await c.request("ANNOUNCE", c.url("live/tiny-aus"), headers, _sdp(fmtp))
            assert response.status == 400, response
        assert "announced mpeg4-generic: sizelength=1 is outside 6..16" in live_server.log()
        await c.close()

    asyncio.run(scenario())


@pytest.mark.serial  # OPTIONS answered within 2 s
def test_packets_with_thousands_of_aus_are_dropped_not_fanned_out(live_server: ServerProcess) -> None:
    """Each packet's 4,095 AUs would be 4,095 RTP packets to every reader: the packet is dropped."""
    path = "live/many-aus"

    async def scenario() -> None:
        publisher = await _publisher(live_server, path)
        await publisher.send_raw(_hbr_packet(0, 1))
        reader = await _reader(live_server, path)
        sent = 20
        await publisher.send_raw(b"".join(_hbr_packet(seq, 4095) for seq in range(1, 1 + sent)))
        await publisher.send_raw(_hbr_packet(sent + 1, 3))  # a normal packet after them
        assert (await publisher.request("OPTIONS", "*")).status == 200  # all of them were taken
        assert (await reader.request("GET_PARAMETER", reader.url(path))).status == 200  # all were read
        got = len(reader.received.rtp(0))
        assert got == 3, f"{got} RTP packets to the reader for {sent} hostile packets"
        assert await _options_seconds(live_server) < 2.0
        for c in (publisher, reader):
            await c.close()

    asyncio.run(scenario())


@pytest.mark.serial  # OPTIONS answered within 2 s
def test_a_publisher_beyond_its_work_budget_is_dropped(live_server: ServerProcess) -> None:
    path = "live/flood"

    async def scenario() -> None:
        publisher = await _publisher(live_server, path)
        watcher = await _reader(live_server, "clip.mp4")  # an unrelated on-demand viewer
        for seq in range(400):  # 400 x 513 units of work, in about a second
            await publisher.send_raw(_hbr_packet(seq, MAX_UNITS_PER_PACKET))
        assert (await publisher.request("OPTIONS", "*")).status == 454  # its session was ended
        assert f"{path}: dropping the publisher" in live_server.log()
        probe = await RawRtspClient("127.0.0.1", live_server.port).connect()
        assert (await probe.request("DESCRIBE", probe.url(path))).status == 404
        assert await _options_seconds(live_server) < 2.0
        assert (await watcher.request("GET_PARAMETER", watcher.url("clip.mp4"))).status == 200
        for c in (publisher, watcher, probe):
            await c.close()

    asyncio.run(scenario())
