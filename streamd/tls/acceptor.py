"""TLS at the transport seam: a listener's connections shake hands under a deadline before the
protocol they were accepted for (``RtspConnection`` for RTSPS, the HTTP front for HTTPS) is told
of them; it then sees an ordinary transport whose ``ssl_object`` extra is set.

The TLS layer is the standard library's ``asyncio.sslproto.SSLProtocol`` (what
``create_server(ssl=...)`` uses), made the connection's protocol from its very first byte: under
uvloop, upgrading an accepted connection with ``start_tls`` lost a ClientHello that arrived
before the upgrade. Around it we add what ``create_server`` does not give: handshakes that
stall past ``timeout`` or send something other than TLS are dropped, counted and logged (the
event loop never waits on them, so others carry on), and handshakes in progress are admitted
per client address like connections.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from asyncio import sslproto
from collections import Counter
from collections.abc import Callable
from typing import Any

from streamd.limits import Admission

log = logging.getLogger("streamd")


class Handshakes:
    """What every connection of one TLS listener shares: context, deadline, limits, counters."""

    def __init__(
        self, context: ssl.SSLContext, timeout: float, admission: Admission, what: str = "TLS"
    ) -> None:
        self.context = context
        self.timeout = timeout
        self.admission = admission
        self.what = what
        # completed, failed (not TLS, no common cipher, ...), timed_out, refused (limits), closed
        self.counters: Counter[str] = Counter()


class TlsAcceptor(sslproto.SSLProtocol):
    """One accepted connection: TLS first, then ``make_protocol()``'s (made before, told after)."""

    def __init__(self, handshakes: Handshakes, make_protocol: Callable[[], asyncio.BaseProtocol]) -> None:
        loop = asyncio.get_running_loop()
        self._handshakes = handshakes
        self._done: asyncio.Future[None] = loop.create_future()
        self._completed = False
        self._client: str | None = None  # admitted for this address, until the handshake ends
        self.label = "client ?"
        super().__init__(
            loop,
            make_protocol(),
            handshakes.context,
            self._done,
            server_side=True,
            ssl_handshake_timeout=handshakes.timeout,
        )

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        peer = transport.get_extra_info("peername") or ("?", 0)
        host = f"[{peer[0]}]" if ":" in str(peer[0]) else str(peer[0])
        self.label = f"{self._handshakes.what} client {host}:{peer[1]}"
        admission = self._handshakes.admission
        if not admission.admit(str(peer[0])):
            self._handshakes.counters["refused"] += 1
            log.warning("%s: refused: %s", self.label, admission.refusal(str(peer[0])))
            transport.abort()
            return
        self._client = str(peer[0])
        self._done.add_done_callback(self._ended)
        super().connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._client is None and not self._done.done():  # refused: the TLS layer never began
            return
        super().connection_lost(exc)

    def _on_handshake_complete(self, handshake_exc: BaseException | None) -> None:
        self._completed = handshake_exc is None
        super()._on_handshake_complete(handshake_exc)

    def _ended(self, done: asyncio.Future[None]) -> None:
        """The handshake is over, one way or the other: count it, log a failure."""
        assert self._client is not None
        self._handshakes.admission.release(self._client)
        if self._completed:
            self._handshakes.counters["completed"] += 1
            return
        exc: Any = None if done.cancelled() else done.exception()
        if isinstance(exc, ssl.SSLError):
            self._failed("failed", f"TLS handshake failed: {exc.reason or exc}")
        elif isinstance(exc, ConnectionAbortedError) and "longer than" in str(exc):
            self._failed("timed_out", f"no TLS handshake in {self._handshakes.timeout:g} s")
        else:
            self._failed("closed", "closed during the TLS handshake")

    def _failed(self, counter: str, why: str) -> None:
        self._handshakes.counters[counter] += 1
        (log.info if counter == "closed" else log.warning)("%s: %s; dropped", self.label, why)
