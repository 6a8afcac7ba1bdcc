"""``webrtc_udp_ports``: a WHEP viewer and a WHIP publisher (aiortc) get host candidates in the range;
the viewer receives media; more sessions than ports get 503 with the reason, and a freed port is reused."""

from __future__ import annotations

import asyncio
import random
import socket
import time
from collections.abc import Iterator

import aiohttp
import pytest
from aiortc import RTCPeerConnection

from tests.integration.conftest import ServerProcess, need, start_server, stop_all
from tests.integration.test_whep import _ffmpeg, _wait, _whip_publish
from tests.integration.whep_client import WhepClient

pytestmark = pytest.mark.integration

PORTS = 5


def _free_range() -> int:
    """The first port of PORTS consecutive UDP ports nobody holds now."""
    for _ in range(50):
        low = random.randrange(42000, 60000)
        socks = []
        try:
            for port in range(low, low + PORTS):
                sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                socks.append(sock)
                sock.bind(("0.0.0.0", port))
            return low
        except OSError:
            continue
        finally:
            for sock in socks:
                sock.close()
    raise RuntimeError("no free UDP port range")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, range]]:
    need("ffmpeg")
    media = tmp_path_factory.mktemp("udp-ports-media")
    _ffmpeg("-f", "lavfi", "-i", "testsrc2=d=1:s=160x120:r=25", "-c:v", "libx264", "-profile:v", "baseline",
            "-bf", "0", "-g", "25", "-pix_fmt", "yuv420p", "-y", str(media / "clip.mkv"))  # fmt: skip
    low = _free_range()
    tmp = tmp_path_factory.mktemp("udp-ports-server")
    config = tmp / "streamd.toml"
    config.write_text(f'webrtc_udp_ports = "{low}-{low + PORTS - 1}"\nwebrtc_connect_timeout = 60\n')
    proc = start_server(media, tmp, "--config", str(config))
    yield proc, range(low, low + PORTS)
    stop_all(proc)


def _candidate_ports(answer: str) -> list[int]:
    lines = [line for line in answer.splitlines() if line.startswith("a=candidate:")]
    return [int(line.split()[5]) for line in lines if " typ host" in line]


async def _offer() -> str:
    pc = RTCPeerConnection()
    pc.addTransceiver("video", direction="recvonly")
    await pc.setLocalDescription(await pc.createOffer())
    sdp = pc.localDescription.sdp
    await pc.close()
    return sdp


async def _post(http: aiohttp.ClientSession, url: str, offer: str) -> tuple[int, str, str | None]:
    headers = {"Content-Type": "application/sdp"}
    async with http.post(url, data=offer, headers=headers) as response:
        return response.status, await response.text(), response.headers.get("Location")


def test_viewer_gets_candidates_in_the_range_and_receives_media(server: tuple[ServerProcess, range]) -> None:
    proc, ports = server

    async def run() -> None:
        client = WhepClient(proc.http("whep/clip.mkv"))
        await client.start(("video",))
        assert client.status == 201, client.answer
        host_ports = _candidate_ports(client.answer)
        assert host_ports and all(p in ports for p in host_ports), (host_ports, ports)
        assert await _wait(lambda: sum(p[2] for p in client.packets["video"]) >= 25, 30)
        assert await client.delete() == 200
        await client.close()

    asyncio.run(run())


def test_whip_publisher_gets_candidates_in_the_range(server: tuple[ServerProcess, range]) -> None:
    proc, ports = server

    async def run() -> None:
        pc, status, location = await _whip_publish(proc.http("whip/live/cam"))
        assert status == 201 and location
        host_ports = _candidate_ports(pc.remoteDescription.sdp)
        assert host_ports and all(p in ports for p in host_ports), (host_ports, ports)
        assert await _wait(lambda: pc.iceConnectionState == "completed", 30), pc.iceConnectionState
        async with aiohttp.ClientSession() as http, http.delete(proc.http(location.lstrip("/"))) as response:
            assert response.status == 200
        await pc.close()

    asyncio.run(run())


def test_more_sessions_than_ports_get_503_and_a_freed_port_is_reused(
    server: tuple[ServerProcess, range],
) -> None:
    proc, ports = server
    url = proc.http("whep/clip.mkv")

    async def run() -> None:
        offer = await _offer()
        held: list[str] = []
        async with aiohttp.ClientSession() as http:
            deadline = time.monotonic() + 30  # the previous test's session may still be closing
            while len(held) < PORTS and time.monotonic() < deadline:
                status, text, location = await _post(http, url, offer)
                if status == 201:
                    assert all(p in ports for p in _candidate_ports(text))
                    held.append(location or "")
                else:
                    await asyncio.sleep(0.1)
            assert len(held) == PORTS
            status, text, _ = await _post(http, url, offer)
            assert status == 503 and "webrtc_udp_ports" in text, (status, text[-400:])
            base = url.split("/whep/")[0]
            async with http.delete(base + held.pop()) as response:
                assert response.status == 200
            deadline = time.monotonic() + 30
            status = 0
            while status != 201 and time.monotonic() < deadline:
                status, text, location = await _post(http, url, offer)
            assert status == 201, text
            held.append(location or "")
            for location in held:
                async with http.delete(base + location):
                    pass
        assert "webrtc_udp_ports" in proc.log()

    asyncio.run(run())
