"""Reaching a chosen worker of ``streamd serve --workers N`` over TLS (RTSPS), for tests.

A TLS connection cannot be pinned the way :mod:`tests.integration.workers_pin` pins plain ones:
the probe's TLS session cannot be given to ffmpeg. The kernel picks a worker by a hash of the
connection's addresses and ports (``SO_REUSEPORT``), so :func:`source_port_for` finds a local port
whose connection reached the wanted worker (over TLS: the UDP port its SETUP answers), ends that
probe with a reset (no TIME_WAIT), and later connections from the same port reach the same worker.
"""

from __future__ import annotations

import socket
import ssl
import struct

from tests.integration.workers_pin import PROBE_FILE, worker_of


def connect_from(port: int, source: int = 0) -> socket.socket:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", source))
    sock.settimeout(10)
    sock.connect(("127.0.0.1", port))
    return sock


def tls(sock: socket.socket) -> ssl.SSLSocket:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # the test's self-signed certificate
    return context.wrap_socket(sock)


def _reset(sock: socket.socket) -> None:
    """Close with RST: no TIME_WAIT, so the same source port connects again at once."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def source_port_for(port: int, rtp_base: int, worker: int, probe: str = PROBE_FILE, tries: int = 200) -> int:
    """A local port whose TLS connections to RTSPS ``port`` reach ``worker`` (``probe``: a file served)."""
    for _ in range(tries):
        sock = tls(connect_from(port))
        source = sock.getsockname()[1]
        try:
            reached = worker_of(sock, port, rtp_base, probe)
        finally:
            _reset(sock)
        if reached == worker:
            return source
    raise AssertionError(f"no TLS connection reached worker {worker} in {tries} tries")


def tls_on(port: int, rtp_base: int, worker: int) -> ssl.SSLSocket:
    """A TLS connection to RTSPS ``port`` that reached ``worker``."""
    return tls(connect_from(port, source_port_for(port, rtp_base, worker)))
