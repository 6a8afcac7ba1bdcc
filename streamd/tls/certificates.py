"""The server's certificate and key, reloaded when their files change (no restart).

A listener keeps one *front* ``ssl.SSLContext`` for its whole life; its SNI callback, which
OpenSSL calls on every ClientHello (with or without a server name), swaps in the context built
from the files as they are now. The files' signatures (mtime, size, inode) are looked at no more
often than ``check_interval`` seconds, so a handshake costs at most two ``stat`` calls; a new
pair that does not load (half-written, key not matching) is logged and the previous one kept.

Settings are the standard library's modern defaults: ``ssl.create_default_context`` ciphers,
TLS 1.2 at least, no compression, no renegotiation.
"""

from __future__ import annotations

import logging
import os
import ssl
import time
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger("streamd")

CHECK_INTERVAL = 1.0  # seconds between looks at the files' signatures

Signature = tuple[tuple[int, int, int], tuple[int, int, int]]


class CertificateError(OSError):
    """The certificate or key cannot be used; the message says which file and why."""


def server_context(cert: Path, key: Path) -> ssl.SSLContext:
    """A server context with the standard library's defaults, TLS 1.2 or later, for this pair."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.options |= ssl.OP_NO_RENEGOTIATION
    try:
        context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise CertificateError(f"cannot load certificate {cert} with key {key}: {exc}") from exc
    return context


def _signature(cert: Path, key: Path) -> Signature:
    a, b = os.stat(cert), os.stat(key)
    return (a.st_mtime_ns, a.st_size, a.st_ino), (b.st_mtime_ns, b.st_size, b.st_ino)


class Certificates:
    """The current context for a certificate/key pair, rebuilt when the files change."""

    def __init__(
        self,
        cert: Path | str,
        key: Path | str,
        *,
        check_interval: float = CHECK_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Loads the pair now: :class:`CertificateError` if it cannot serve."""
        self.cert, self.key = Path(cert), Path(key)
        self.check_interval = check_interval
        self._clock = clock
        self._signature = _signature(self.cert, self.key)
        self.current = server_context(self.cert, self.key)
        self._checked = clock()
        self.reloads = 0
        self.reload_failures = 0

    def refresh(self) -> ssl.SSLContext:
        """The context for a new handshake: the files' look is checked at most every interval."""
        now = self._clock()
        if now - self._checked < self.check_interval:
            return self.current
        self._checked = now
        try:
            signature = _signature(self.cert, self.key)
        except OSError as exc:
            self._failed(f"cannot stat {exc.filename}: {exc.strerror}")
            return self.current
        if signature == self._signature:
            return self.current
        self._signature = signature  # a pair that fails is not retried until it changes again
        try:
            self.current = server_context(self.cert, self.key)
        except CertificateError as exc:
            self._failed(str(exc))
            return self.current
        self.reloads += 1
        log.info("TLS certificate %s reloaded", self.cert)
        return self.current

    def _failed(self, why: str) -> None:
        self.reload_failures += 1
        log.warning("TLS certificate not reloaded (the previous one stays in use): %s", why)

    def front_context(self) -> ssl.SSLContext:
        """The context a listener keeps: each handshake is switched to :meth:`refresh`'s."""
        front = server_context(self.cert, self.key)  # something valid to start from

        def switch(ssl_object: ssl.SSLObject, server_name: str | None, _: ssl.SSLContext) -> None:
            ssl_object.context = self.refresh()

        front.sni_callback = switch  # type: ignore[assignment]
        return front
