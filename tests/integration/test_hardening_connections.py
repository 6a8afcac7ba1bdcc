"""Issue 12, item 5: connections are bounded per client and in total, and a request head that
trickles in a byte at a time cannot hold a connection past ``request_head_timeout``."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest

from tests import mediagen
from tests.integration.conftest import ServerProcess, start_server, stop_all

pytestmark = pytest.mark.integration

HEAD_TIMEOUT = 2.0
PER_CLIENT = 3
TOTAL = 5
OPTIONS = b"OPTIONS * RTSP/1.0\r\nCSeq: 1\r\n\r\n"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    media = tmp_path_factory.mktemp("conn-media")
    mediagen.make_h264_aac_mp4(media / "clip.mp4", seconds=1)
    tmp = tmp_path_factory.mktemp("conn-server")
    config = tmp / "streamd.toml"
    config.write_text(
        f"request_head_timeout = {HEAD_TIMEOUT}\nmax_connections = {TOTAL}\n"
        f"max_connections_per_client = {PER_CLIENT}\n"
    )
    proc = start_server(media, tmp, "--config", str(config), "--no-http")
    yield proc
    stop_all(proc)


def _connect(server: ServerProcess, source: str = "127.0.0.1") -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((source, 0))
    sock.settimeout(20)
    sock.connect(("127.0.0.1", server.port))
    return sock


def _served(sock: socket.socket) -> bool:
    """Whether the server answers an OPTIONS on ``sock`` (False: it closed the connection)."""
    try:
        sock.sendall(OPTIONS)
        return sock.recv(4096).startswith(b"RTSP/1.0 200")
    except (ConnectionResetError, BrokenPipeError):
        return False


def test_a_trickled_request_head_is_cut_at_the_deadline(server: ServerProcess) -> None:
    sock = _connect(server)
    begin = time.monotonic()
    sent = 0
    closed = False
    try:
        for byte in OPTIONS[:-1]:  # never complete: a byte every half second for ~15 s
            sock.sendall(bytes([byte]))
            sent += 1
            sock.settimeout(0.5)
            try:
                if sock.recv(4096) == b"":
                    closed = True
                    break
            except TimeoutError:
                continue
    except (ConnectionResetError, BrokenPipeError):
        closed = True
    finally:
        sock.close()
    elapsed = time.monotonic() - begin
    assert closed, f"still open after {sent} bytes in {elapsed:.1f} s"
    # not before the deadline; the event loop's timers are kept in whole milliseconds, so its
    # 2 s may end a fraction of a millisecond before ours does
    assert sent < len(OPTIONS) - 1 and elapsed >= HEAD_TIMEOUT - 0.01
    assert "no complete request in 2 s; closing" in server.log()
    other = _connect(server)
    assert _served(other)  # the server carries on
    other.close()


def _hold_served(server: ServerProcess, count: int) -> list[socket.socket]:
    """``count`` connections from 127.0.0.1, all served once the server has let go of the earlier
    tests' (it notices a close in its own time; with ``--workers``, through the parent's table)."""
    deadline = time.monotonic() + 20
    while True:
        held = [_connect(server) for _ in range(count)]
        if all(_served(sock) for sock in held) or time.monotonic() > deadline:
            return held
        for sock in held:
            sock.close()
        time.sleep(0.1)


def test_connections_are_bounded_per_client_address_and_in_total(server: ServerProcess) -> None:
    held = _hold_served(server, PER_CLIENT)
    try:
        assert all(_served(sock) for sock in held)
        extra = _connect(server)  # the kernel accepts it; the server closes it at once
        assert not _served(extra)
        extra.close()
        other = _connect(server, "127.0.0.2")  # another address is still served
        held.append(other)
        assert _served(other)
        held.append(_connect(server, "127.0.0.3"))
        assert _served(held[-1])
        late = _connect(server, "127.0.0.4")  # now the total is reached
        assert not _served(late)
        late.close()
        assert "refused: 3 connections at once from 127.0.0.1" in server.log()
        assert "refused: 5 connections at once already" in server.log()
    finally:
        for sock in held:
            sock.close()
    # once they are gone, 127.0.0.1 is served again (the server notices the closes in its own time)
    deadline = time.monotonic() + 20
    while True:
        again = _connect(server)
        ok = _served(again)
        again.close()
        if ok or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert ok


def test_a_steady_stream_of_interleaved_frames_is_not_cut(server: ServerProcess) -> None:
    """Like a TCP publisher whose every read ends mid-frame: frames complete, so no deadline."""
    sock = _connect(server)
    frame = b"$\x00\x00\x10" + bytes(16)
    stream = frame * 40
    step = len(frame) + len(frame) // 2  # every write ends in the middle of a frame
    begin = time.monotonic()
    try:
        for offset in range(0, len(stream), step):
            sock.sendall(stream[offset : offset + step])
            time.sleep(0.2)
        assert time.monotonic() - begin > 2 * HEAD_TIMEOUT
        assert _served(sock)
    finally:
        sock.close()
