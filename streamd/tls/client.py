"""TLS as a client (the relay pulling an ``rtsps://`` upstream): the standard library's defaults,
TLS 1.2 or later, verifying the upstream's certificate and name unless a path says not to
(``upstream_tls_verify = false``: a camera with a self-signed certificate; the link is then
encrypted but not authenticated)."""

from __future__ import annotations

import ssl
from functools import cache

RTSPS_DEFAULT_PORT = 322  # RFC 7826 section 19.2


@cache
def client_context(verify: bool = True) -> ssl.SSLContext:
    """One shared context per setting (building one loads the system's CA store)."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def is_secure_url(url: str) -> bool:
    return url[:8].lower() == "rtsps://"
