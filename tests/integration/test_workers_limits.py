"""Limits for the whole server under ``--workers 2`` (issue 18): sessions and publishers are
counted by the parent, so a client pinned to two workers gets the 453/503 a single server gives,
a slot freed on one worker is usable on the other, and a killed worker's slots are released."""

from __future__ import annotations

import os
import signal
import socket
from collections.abc import Iterator

import pytest

from tests.integration.conftest import ServerProcess, need, start_server
from tests.integration.test_workers import worker_pids
from tests.integration.workers_pin import exchange, pinned
from tests.mediagen import make_h264_aac_mp4
from tests.waiting import wait_until

pytestmark = pytest.mark.integration

CONFIG = "max_sessions = 3\nmax_sessions_per_client = 2\nmax_publishers = 1\n"
OPUS = "m=audio 0 RTP/AVP 96\r\na=rtpmap:96 opus/48000/2\r\na=control:trackID=0\r\n"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    need("ffmpeg")
    media = tmp_path_factory.mktemp("limits-media")
    make_h264_aac_mp4(media / "bframes.mp4", seconds=2, bframes=True)
    tmp = tmp_path_factory.mktemp("limits-server")
    config = tmp / "limits.toml"
    config.write_text(CONFIG)
    proc = start_server(media, tmp, "--config", str(config), "--workers", "2")
    wait_until(lambda: "all 2 workers ready" in proc.log(), "both workers ready", timeout=120)
    yield proc
    proc.stop()


def setup(server: ServerProcess, sock: socket.socket, cseq: int = 10) -> tuple[int, str]:
    """A new session on ``sock``'s worker (a file's first track over TCP): status, session id."""
    url = server.url("bframes.mp4")
    transport = "Transport: RTP/AVP/TCP;unicast;interleaved=0-1\n"
    status, headers, _ = exchange(sock, f"SETUP {url}/trackID=0 RTSP/1.0\nCSeq: {cseq}\n{transport}")
    return status, headers.get("session", "").split(";")[0]


def teardown(server: ServerProcess, sock: socket.socket, session: str, path: str = "bframes.mp4") -> None:
    request = f"TEARDOWN {server.url(path)} RTSP/1.0\nCSeq: 30\nSession: {session}\n"
    assert exchange(sock, request)[0] == 200


def announce(server: ServerProcess, sock: socket.socket, path: str) -> tuple[int, str]:
    sdp = f"v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=raw\r\nt=0 0\r\n{OPUS}".encode()
    head = f"ANNOUNCE {server.url(path)} RTSP/1.0\nCSeq: 20\nContent-Type: application/sdp\n"
    status, headers, _ = exchange(sock, head, sdp)
    return status, headers.get("session", "").split(";")[0]


def no_sessions(server: ServerProcess) -> None:
    """Every session gone on every worker (and so its slot released at the parent: a worker
    sends the release before it answers the parent's state question)."""
    wait_until(lambda: not server.session_ids(), "no sessions left")


def test_sessions_are_counted_for_the_whole_server(server: ServerProcess) -> None:
    first, second = (pinned(server.port, server.rtp_port, w) for w in (0, 1))
    try:
        no_sessions(server)  # (the pinning probes' sessions)
        status, on_first = setup(server, first)
        assert status == 200
        status, on_second = setup(server, second)
        assert status == 200
        # the client's share (2) is used up across both workers: 453 on either, as one server says
        assert setup(server, first, 11)[0] == 453
        assert setup(server, second, 11)[0] == 453
        assert "2 sessions from this client (max_sessions_per_client)" in server.log()
        teardown(server, first, on_first)
        status, again = setup(server, second, 12)  # the slot freed on worker 0, taken on worker 1
        assert status == 200
        teardown(server, second, on_second)
        teardown(server, second, again)
    finally:
        first.close()
        second.close()


def test_publishers_are_counted_for_the_whole_server(server: ServerProcess) -> None:
    first, second = (pinned(server.port, server.rtp_port, w) for w in (0, 1))
    try:
        no_sessions(server)
        status, publisher = announce(server, first, "live/one")
        assert status == 200
        assert announce(server, second, "live/two")[0] == 503  # max_publishers = 1, on the other worker
        assert "1 publishers already (max_publishers)" in server.log()
        teardown(server, first, publisher, "live/one")
        status, publisher = announce(server, second, "live/two")
        assert status == 200
        teardown(server, second, publisher, "live/two")
    finally:
        first.close()
        second.close()


def test_a_killed_workers_slots_are_released(server: ServerProcess) -> None:
    victim_sock, other = (pinned(server.port, server.rtp_port, w) for w in (0, 1))
    try:
        no_sessions(server)
        assert setup(server, victim_sock)[0] == 200
        assert setup(server, victim_sock, 11)[0] == 200
        assert setup(server, other)[0] == 453
        victim = worker_pids(server)[0]
        os.kill(victim, signal.SIGKILL)
        released = "worker 0 held 2 slots (sessions, publishers): released"
        wait_until(lambda: released in server.log(), "the parent to release worker 0's slots")
        status, session = setup(server, other, 12)
        assert status == 200
        teardown(server, other, session)
        wait_until(lambda: worker_pids(server)[0] != victim, "worker 0 started again", timeout=120)
    finally:
        victim_sock.close()
        other.close()
