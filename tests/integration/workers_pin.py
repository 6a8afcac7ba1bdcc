"""Reaching a chosen worker of ``streamd serve --workers N`` for tests.

The kernel spreads connections over the workers (``SO_REUSEPORT``, by a hash of the addresses),
so a test cannot choose. It can find out: a UDP SETUP's answer names the worker's own RTP port
(base + 2 x index). :func:`pinned` opens connections until one lands on the wanted worker (it
sets up a session there and tears it down, the connection stays open), and :class:`Steering` is a
local TCP port whose n-th connection is carried over the n-th pinned connection, so ffmpeg or
GStreamer reach the workers the test chose.
"""

from __future__ import annotations

import contextlib
import re
import socket
import threading
from collections.abc import Sequence

PROBE_FILE = "bframes.mp4"


def exchange(sock: socket.socket, request: str, body: bytes = b"") -> tuple[int, dict[str, str], bytes]:
    """Send one request (RTSP or HTTP head, ``\\r\\n`` line ends added; ``body`` after it) and
    read its response."""
    head = request + (f"Content-Length: {len(body)}\n" if body else "")
    sock.sendall(head.replace("\n", "\r\n").encode() + b"\r\n" + body)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed before the response to {request.splitlines()[0]!r}")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode(errors="replace").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return int(lines[0].split()[1]), headers, body[:length]


def worker_of(sock: socket.socket, port: int, rtp_base: int, probe: str = PROBE_FILE) -> int:
    """Which worker this connection reached: its UDP port pair says (``probe``: a file served)."""
    url = f"rtsp://127.0.0.1:{port}/{probe}"
    status, _, sdp = exchange(sock, f"DESCRIBE {url} RTSP/1.0\nCSeq: 1\n")
    assert status == 200, status
    control = re.search(rb"a=control:(trackID=\d+)", sdp)
    assert control is not None
    status, headers, _ = exchange(
        sock,
        f"SETUP {url}/{control.group(1).decode()} RTSP/1.0\nCSeq: 2\n"
        "Transport: RTP/AVP;unicast;client_port=9-10\n",
    )
    assert status == 200, (status, headers)
    server_port = int(re.search(r"server_port=(\d+)", headers["transport"]).group(1))  # type: ignore[union-attr]
    session = headers["session"].split(";")[0]
    status, _, _ = exchange(sock, f"TEARDOWN {url} RTSP/1.0\nCSeq: 3\nSession: {session}\n")
    assert status == 200
    return (server_port - rtp_base) // 2


def pinned(port: int, rtp_base: int, worker: int, probe: str = PROBE_FILE, tries: int = 200) -> socket.socket:
    """A connection to the server's RTSP port that landed on ``worker``."""
    for _ in range(tries):
        sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        try:
            if worker_of(sock, port, rtp_base, probe) == worker:
                return sock
        except BaseException:
            sock.close()
            raise
        sock.close()
    raise AssertionError(f"no connection reached worker {worker} in {tries} tries")


class Steering:
    """A local port: its n-th connection is piped through ``upstreams[n]`` (pinned connections)."""

    def __init__(self, upstreams: Sequence[socket.socket]) -> None:
        self.upstreams = list(upstreams)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.threads: list[threading.Thread] = []
        self._accepting = threading.Thread(target=self._accept, daemon=True)
        self._accepting.start()

    def url(self, path: str) -> str:
        return f"rtsp://127.0.0.1:{self.port}/{path}"

    def _accept(self) -> None:
        for upstream in self.upstreams:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream.settimeout(None)
            for a, b in ((client, upstream), (upstream, client)):
                thread = threading.Thread(target=_pipe, args=(a, b), daemon=True)
                thread.start()
                self.threads.append(thread)

    def close(self) -> None:
        self.listener.close()
        for sock in self.upstreams:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def __enter__(self) -> Steering:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _pipe(source: socket.socket, sink: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)


def steer(port: int, rtp_base: int, *workers: int) -> Steering:
    """A :class:`Steering` whose connections reach ``workers``, in that order."""
    return Steering([pinned(port, rtp_base, w) for w in workers])
