"""End-to-end fuzzing (issue 14 item 6): mutated RTSP requests over several connections, a
publisher's mutated RTP/RTCP, and garbage datagrams at the RTP/RTCP ports, all while ffmpeg plays a
file. The player must get its frames, the server must live on and answer, and log no traceback.

Inputs are the fuzz seed corpora (``tests/fuzz/corpus/``) mutated by the seeded mutator, so a
failure reproduces with the same ``FUZZ_SEED``.
"""

from __future__ import annotations

import asyncio
import os
import random
import re
import socket
from collections.abc import Iterator

import pytest

from tests import mediagen
from tests.fuzz.corpus import CORPUS, inputs
from tests.fuzz.mutator import mutate
from tests.fuzz.targets.common import framed
from tests.fuzz.targets.rtp import LIVE_SDP
from tests.integration.conftest import ServerProcess, need, start_server, stop_all
from tests.rtsp_client import RawRtspClient

pytestmark = pytest.mark.integration

REQUESTS = 2000  # mutated RTSP messages, spread over CONNECTIONS connections
CONNECTIONS = 8
DATAGRAMS = 2000  # at each of: the RTP port, the RTCP port (unrouted), a publisher's routes
SEED = os.environ.get("FUZZ_SEED", "streamd")
SECONDS, FPS = 6, 25
SEED_URL = b"rtsp://127.0.0.1:8554/test"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    need("ffmpeg")
    media = tmp_path_factory.mktemp("fuzz-media")
    mediagen.make_h264_aac_mp4(media / "clip.mp4", seconds=SECONDS, bframes=False, size=(160, 120), fps=FPS)
    proc = start_server(media, tmp_path_factory.mktemp("fuzz-server"))
    yield proc
    stop_all(proc)  # also: no Traceback in the log


def _mutated_requests(server: ServerProcess, rng: random.Random) -> list[bytes]:
    """The parser seeds (without their split byte) aimed at this server's file, then mutated."""
    url = server.url("clip.mp4").encode()
    pool = [p.read_bytes()[1:].replace(SEED_URL, url) for p in inputs(CORPUS, "rtsp_parser")]
    return [mutate(rng.choice(pool), rng, pool) for _ in range(REQUESTS)]


def _mutated_packets(target: str, rng: random.Random, count: int) -> list[bytes]:
    pool = [packet for p in inputs(CORPUS, target) for packet in framed(p.read_bytes()) if packet]
    return [mutate(rng.choice(pool), rng, pool) for _ in range(count)]


async def _hammer(server: ServerProcess, messages: list[bytes]) -> int:
    """Send ``messages`` over CONNECTIONS connections (reconnecting whenever the server closes
    one, as it does after a fatal parse error); the number of response bytes read."""
    got = 0

    async def drain(reader: asyncio.StreamReader) -> None:
        nonlocal got
        while data := await reader.read(65536):
            got += len(data)

    async def connection(share: list[bytes]) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        task = asyncio.create_task(drain(reader))
        for message in share:
            if task.done() or writer.is_closing():
                writer.close()
                reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
                task = asyncio.create_task(drain(reader))
            try:
                writer.write(message)
                await writer.drain()
            except (ConnectionError, OSError):
                task.cancel()
                continue
            await asyncio.sleep(0)
        before = got
        deadline = asyncio.get_running_loop().time() + 30
        while got == before and not task.done() and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.05)  # an answer to the last requests, or the server's close
        writer.close()
        task.cancel()

    shares = [messages[i::CONNECTIONS] for i in range(CONNECTIONS)]
    await asyncio.gather(*(connection(share) for share in shares))
    return got


async def _publisher_garbage(server: ServerProcess, rng: random.Random) -> None:
    """A publisher whose UDP RTP and RTCP are mutated H.264 packets and mutated RTCP."""
    rtp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rtcp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rtp.bind(("127.0.0.1", 0))
    rtcp.bind(("127.0.0.1", 0))
    client = await RawRtspClient("127.0.0.1", server.port).connect()
    try:
        url = client.url("live/fuzz")
        sdp = (
            "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=fuzz\r\nt=0 0\r\n"
            + LIVE_SDP["h264"]
            + "a=control:streamid=0\r\n"
        )
        announce = await client.request(
            "ANNOUNCE", url, {"Content-Type": "application/sdp"}, body=sdp.encode()
        )
        assert announce.status == 200, announce
        ports = f"{rtp.getsockname()[1]}-{rtcp.getsockname()[1]}"
        setup = await client.request(
            "SETUP",
            url + "/streamid=0",
            {"Transport": f"RTP/AVP/UDP;unicast;client_port={ports};mode=record"},
        )
        assert setup.status == 200, setup
        assert (await client.request("RECORD", url, {"Range": "npt=0-"})).status == 200
        for n, packet in enumerate(_mutated_packets("rtp_h264", rng, DATAGRAMS)):
            rtp.sendto(packet, ("127.0.0.1", server.rtp_port))
            if n % 4 == 0:
                rtcp.sendto(_mutated_packets("rtcp", rng, 1)[0], ("127.0.0.1", server.rtp_port + 1))
            if n % 50 == 0:
                await asyncio.sleep(0.01)  # stay within the publisher work budget, mostly
        await client.request("TEARDOWN", url)
    finally:
        await client.close()
        rtp.close()
        rtcp.close()


async def _datagram_garbage(server: ServerProcess, rng: random.Random) -> None:
    """Unrouted datagrams: mutated RTP and RTCP, random bytes, empty datagrams."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        packets = _mutated_packets("rtp_h264", rng, DATAGRAMS // 2) + _mutated_packets(
            "rtcp", rng, DATAGRAMS // 2
        )
        for n, packet in enumerate(packets):
            for port in (server.rtp_port, server.rtp_port + 1):
                sock.sendto(packet if n % 10 else rng.randbytes(n % 1400), ("127.0.0.1", port))
            if n % 100 == 0:
                await asyncio.sleep(0.005)
    finally:
        sock.close()


async def _bad_pipelined_http(server: ServerProcess) -> None:
    """A valid HTTP request, then one with a method aiohttp does not know, on both ports: aiohttp
    logged the second at ERROR with a traceback when it came in a later read (found by this
    test's first run)."""
    for port in (server.port, server.http_port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /nothing HTTP/1.1\r\nHost: x\r\n\r\n")
        await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)  # answered: the next read is new
        writer.write(b"T /test HTTP/1.0\r\n\r\n")
        await asyncio.wait_for(reader.read(), 30)  # until the server closes the connection
        writer.close()


async def test_server_keeps_serving_a_player_under_fuzzed_input(server: ServerProcess) -> None:
    rng = random.Random(f"{SEED}:server")
    player = await asyncio.create_subprocess_exec(
        "ffmpeg", "-nostdin", "-loglevel", "error", "-rtsp_transport", "tcp", "-i", server.url("clip.mp4"),
        "-map", "0:v", "-c", "copy", "-f", "framecrc", "-",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    answered = await _hammer(server, _mutated_requests(server, rng))
    await _bad_pipelined_http(server)
    await _publisher_garbage(server, rng)
    await _datagram_garbage(server, rng)
    out, err = await asyncio.wait_for(player.communicate(), 120)

    frames = [line for line in out.decode().splitlines() if line and not line.startswith("#")]
    assert player.returncode == 0, err.decode()
    assert len(frames) >= SECONDS * FPS * 0.9, (len(frames), err.decode())
    assert answered > 0  # the mutated requests were answered, not just swallowed
    assert server.process.poll() is None, server.log()
    client = await RawRtspClient("127.0.0.1", server.port).connect()
    try:
        assert (await client.request("OPTIONS", "*")).status == 200
    finally:
        await client.close()
    log = server.log()
    assert "Traceback" not in log, log
    errors = [line for line in log.splitlines() if re.search(r"\bERROR\b", line)]
    assert not [line for line in errors if "failed" in line.lower()], errors
