"""RTSP-over-HTTP tunnels under attack (issue 12 item 8), with raw sockets against the real server:
one client's GET halves without a POST must not lock other clients out (bounded per client, closed
after the pairing deadline), and a POST from another address must not take a tunnel over."""

from __future__ import annotations

import base64
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import ServerProcess, per_process_only, start_server, stop_all

pytestmark = pytest.mark.integration

PENDING = 4
PAIRING = 2.0


@pytest.fixture(scope="module")
def tunnels(media_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    tmp = tmp_path_factory.mktemp("tunnel-limits")
    config = tmp / "streamd.toml"
    config.write_text(f"max_tunnel_pending_per_client = {PENDING}\ntunnel_pairing_timeout = {PAIRING}\n")
    proc = start_server(media_dir, tmp, "--config", str(config))
    yield proc
    stop_all(proc)


def _connect(server: ServerProcess, source: str) -> socket.socket:
    sock = socket.socket()
    sock.bind((source, 0))
    sock.settimeout(10)
    sock.connect(("127.0.0.1", server.http_port))
    return sock


def _get(server: ServerProcess, source: str, cookie: str) -> tuple[socket.socket, bytes]:
    sock = _connect(server, source)
    sock.sendall(
        f"GET /ten.mp4 HTTP/1.0\r\nx-sessioncookie: {cookie}\r\n"
        "Accept: application/x-rtsp-tunnelled\r\n\r\n".encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(4096)
        if not chunk:
            break
        head += chunk
    return sock, head


def _post(server: ServerProcess, source: str, cookie: str, requests: bytes = b"") -> socket.socket:
    sock = _connect(server, source)
    sock.sendall(
        f"POST /ten.mp4 HTTP/1.0\r\nx-sessioncookie: {cookie}\r\n"
        "Content-Type: application/x-rtsp-tunnelled\r\nContent-Length: 32767\r\n\r\n".encode()
        + base64.b64encode(requests)
    )
    return sock


def _options(cseq: int) -> bytes:
    return f"OPTIONS rtsp://127.0.0.1/ten.mp4 RTSP/1.0\r\nCSeq: {cseq}\r\n\r\n".encode()


def _read_until(sock: socket.socket, needle: bytes, data: bytes = b"") -> bytes:
    while needle not in data:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


def _closed(sock: socket.socket) -> bool:
    try:
        while sock.recv(4096):
            pass
    except TimeoutError:
        return False
    except OSError:
        pass
    return True


@per_process_only
def test_waiting_gets_from_one_client_do_not_lock_others_out(tunnels: ServerProcess) -> None:
    flood = [_get(tunnels, "127.0.0.1", f"flood{i}") for i in range(PENDING + 2)]
    started = time.monotonic()
    heads = [head for _, head in flood]
    assert all(h.startswith(b"HTTP/1.0 200") for h in heads[:PENDING]), heads
    assert all(h.startswith(b"HTTP/1.0 503") for h in heads[PENDING:]), heads
    # another client opens a tunnel and is answered through it
    get, head = _get(tunnels, "127.0.0.2", "other")
    post = _post(tunnels, "127.0.0.2", "other", _options(1))
    assert head.startswith(b"HTTP/1.0 200")
    assert b"RTSP/1.0 200 OK" in _read_until(get, b"CSeq: 1\r\n", head)
    # the flood's halves are closed at the pairing deadline; then the flooder may try again
    for sock, _ in flood[:PENDING]:
        assert _closed(sock)
    assert time.monotonic() - started >= PAIRING - 0.5
    again, head = _get(tunnels, "127.0.0.1", "flood-again")
    assert head.startswith(b"HTTP/1.0 200")
    for sock in (get, post, again, *(s for s, _ in flood)):
        sock.close()


def test_a_post_from_another_address_cannot_take_a_tunnel_over(tunnels: ServerProcess) -> None:
    get, head = _get(tunnels, "127.0.0.4", "victim")
    post = _post(tunnels, "127.0.0.4", "victim", _options(1))
    data = _read_until(get, b"CSeq: 1\r\n", head)
    thief = _post(tunnels, "127.0.0.3", "victim", _options(7))
    answer = _read_until(thief, b"\r\n\r\n")
    assert answer.startswith(b"HTTP/1.0 403"), answer
    post.sendall(base64.b64encode(_options(2)))  # the victim's tunnel carries on
    data = _read_until(get, b"CSeq: 2\r\n", data)
    assert b"CSeq: 7" not in data
    for sock in (get, post, thief):
        sock.close()
