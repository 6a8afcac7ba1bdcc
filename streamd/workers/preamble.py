"""The first line of a forwarded client connection: who the client is, as the forwarding worker saw it.

A TLS connection cannot change process (its TLS state lives in the worker that terminated it), so
that worker forwards the decrypted bytes to the worker that holds the client's session or tunnel
(:mod:`.pipe`). Over the unix socket the receiving worker sees no client address and no TLS; this
line, written by the forwarding worker before any byte of the client's, tells it both, so the
connection is authorized as that client (its address, ``secure``), never trusted as a sibling::

    STREAMD-PIPE/1 <kind> <client ip> <client port> <local ip> <local port> <tls|clear>\\r\\n

``kind`` is ``rtsp`` (an RTSP connection) or ``tunnel`` (the POST half of an RTSP-over-HTTP
tunnel). Sans-I/O: :func:`parse` takes the bytes read so far.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

MAGIC = "STREAMD-PIPE/1"
KINDS = ("rtsp", "tunnel")
MAX_LINE = 256  # bytes, CRLF included: the longest valid line (two IPv6 addresses) is ~120


class PreambleError(ValueError):
    """The connection does not start with a valid preamble: it is closed."""


@dataclass(frozen=True)
class Preamble:
    kind: str
    client: tuple[str, int]
    local: tuple[str, int]
    secure: bool

    def encode(self) -> bytes:
        for host, port in (self.client, self.local):
            _address(host, str(port))  # never write what the other side refuses
        if self.kind not in KINDS:
            raise PreambleError(f"unknown kind {self.kind!r}")
        fields = (MAGIC, self.kind, *map(str, (*self.client, *self.local)), "tls" if self.secure else "clear")
        return (" ".join(fields) + "\r\n").encode("ascii")


def parse(data: bytes | bytearray) -> tuple[Preamble, int] | None:
    """The preamble at the start of ``data`` and how many bytes it took; None: not complete yet.

    Raises :class:`PreambleError` when it cannot become a valid one."""
    start = bytes(data[: len(MAGIC) + 1])
    if not (MAGIC + " ").encode().startswith(start):
        raise PreambleError("not a forwarded connection")
    end = data.find(b"\r\n", 0, MAX_LINE)
    if end < 0:
        if len(data) >= MAX_LINE:
            raise PreambleError(f"no preamble line in the first {MAX_LINE} bytes")
        return None
    try:
        line = bytes(data[:end]).decode("ascii")
    except UnicodeDecodeError:
        raise PreambleError("a preamble is ASCII") from None
    fields = line.split(" ")
    if len(fields) != 7 or fields[0] != MAGIC:
        raise PreambleError(f"malformed preamble {line[:80]!r}")
    _, kind, client_host, client_port, local_host, local_port, security = fields
    if kind not in KINDS:
        raise PreambleError(f"unknown kind {kind[:20]!r}")
    if security not in ("tls", "clear"):
        raise PreambleError(f"unknown security {security[:20]!r}")
    preamble = Preamble(
        kind, _address(client_host, client_port), _address(local_host, local_port), security == "tls"
    )
    return preamble, end + 2


def _address(host: str, port: str) -> tuple[str, int]:
    """An IP address (never a name: a client address is what the kernel said) and a port."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise PreambleError(f"not an IP address: {host[:60]!r}") from None
    if not (port.isascii() and port.isdigit() and len(port) <= 5 and int(port) <= 65535):
        raise PreambleError(f"not a port: {port[:20]!r}")
    return host, int(port)
