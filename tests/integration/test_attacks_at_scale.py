"""Issue 14's attack list at its own scale, against the real server with default limits: 2,000
slowloris connections and 5,000 SETUPs without PLAY from attackers, while a normal client plays.

Attackers use other loopback addresses (127.0.0.2, 127.0.0.3) than the player (127.0.0.1), as
they would be other hosts: the per-client caps stop them, and the player never notices.
"""

from __future__ import annotations

import asyncio
import resource
import socket
import subprocess
from collections import Counter
from collections.abc import Iterator

import pytest

from tests import mediagen
from tests.integration.conftest import ServerProcess, need, per_process_only, start_server, stop_all

pytestmark = pytest.mark.integration

SLOW_CONNECTIONS = 2000
SETUPS = 5000
SETUP_CONNECTIONS = 50  # 100 SETUPs each, in order


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    media = tmp_path_factory.mktemp("scale-media")
    mediagen.make_h264_aac_mp4(media / "clip.mp4", seconds=2)
    proc = start_server(media, tmp_path_factory.mktemp("scale-server"))  # the default limits
    yield proc
    stop_all(proc)
    assert "Traceback" not in proc.log()


def ffprobe_plays(server: ServerProcess) -> bool:
    """A normal player (from 127.0.0.1): every stream described and packets read to the end."""
    result = subprocess.run(
        ["ffprobe", "-v", "error", "-rtsp_transport", "tcp", "-count_packets", "-show_entries",
         "stream=codec_name,nb_read_packets", "-of", "csv=p=0", server.url("clip.mp4")],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    rows = dict(line.split(",")[:2] for line in result.stdout.split())
    return result.returncode == 0 and set(rows) == {"h264", "aac"} and all(int(n) > 20 for n in rows.values())


def _raise_open_files(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < needed:
        pytest.skip(f"the open-file limit ({hard}) is below the {needed} this test opens")
    if soft != resource.RLIM_INFINITY and soft < needed:
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


@per_process_only
def test_two_thousand_slowloris_connections_leave_a_player_alone(server: ServerProcess) -> None:
    need("ffprobe")
    _raise_open_files(SLOW_CONNECTIONS + 200)
    held: list[socket.socket] = []
    refused = 0
    try:
        for _ in range(SLOW_CONNECTIONS):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.2", 0))
            sock.settimeout(10)
            try:
                sock.connect(("127.0.0.1", server.port))
                sock.sendall(b"O")  # the first byte of a request that never ends
            except OSError:
                refused += 1
                sock.close()
                continue
            held.append(sock)
        assert ffprobe_plays(server), "the player was held up by the slow connections"
        # the per-client cap (100) closed the rest: count the attacker's connections still open
        still_open = 0
        for sock in held:
            sock.settimeout(0.05)
            try:
                still_open += sock.recv(1) != b""
            except TimeoutError:
                still_open += 1
            except OSError:
                pass
        assert still_open <= 100, f"{still_open} slow connections from one address kept"
    finally:
        for sock in held:
            sock.close()
    assert ffprobe_plays(server)


async def _setups(server: ServerProcess, source: str, count: int) -> Counter[int]:
    """``count`` SETUPs of new sessions, one after another on one connection; their statuses."""
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port, local_addr=(source, 0))
    statuses: Counter[int] = Counter()
    try:
        for cseq in range(1, count + 1):
            writer.write(
                f"SETUP {server.url('clip.mp4')}/trackID=0 RTSP/1.0\r\nCSeq: {cseq}\r\n"
                "Transport: RTP/AVP;unicast;client_port=40000-40001\r\n\r\n".encode()
            )
            head = await reader.readuntil(b"\r\n\r\n")
            statuses[int(head.split()[1])] += 1
            lengths = [line for line in head.lower().split(b"\r\n") if line.startswith(b"content-length")]
            await reader.readexactly(int(lengths[0].split(b":")[1]) if lengths else 0)
    except (asyncio.IncompleteReadError, ConnectionError):
        statuses[0] += count - sum(statuses.values())  # closed on us: the rest never answered
    finally:
        writer.close()
    return statuses


async def test_five_thousand_setups_without_play_are_capped(server: ServerProcess) -> None:
    need("ffprobe")
    per_connection = SETUPS // SETUP_CONNECTIONS
    attack = asyncio.gather(*(_setups(server, "127.0.0.3", per_connection) for _ in range(SETUP_CONNECTIONS)))
    played = asyncio.get_running_loop().run_in_executor(None, ffprobe_plays, server)
    results, ok = await asyncio.gather(attack, played)
    statuses: Counter[int] = sum(results, Counter())
    assert sum(statuses.values()) == SETUPS
    assert statuses[200] <= 200, statuses  # max_sessions_per_client
    assert statuses[453] >= SETUPS - 200 - statuses[0], statuses  # the rest: 453 Not Enough Bandwidth
    assert ok, "the player was held up by the SETUP flood"
    listed = server.api("sessions?limit=1000")
    assert not listed["more"] and len(listed["sessions"]) == statuses[200] <= 200  # none kept beyond the cap
