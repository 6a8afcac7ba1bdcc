"""Which requests an encryption policy lets through, as a pure function.

``encryption`` is set per server and per path: "no" (clear and TLS alike), "optional" (the
same for RTSP and HTTP; SRTP is offered where a client asks for it) and "strict" (nothing of the
path travels in clear). :func:`decide` answers for one request from the path's policy, whether
its connection is secure (RTSPS, HTTPS, or a tunnel over HTTPS) and, where the request chooses
how media travels (SETUP's Transport), the transport profile asked for.

Status for a refusal in clear: **403 Forbidden**. RFC 2326 and RFC 7826 have no code meaning
"use TLS": 401 would make players ask for a password that cannot help, 470/472 (RFC 7826) are
about a proxy's connection to the next hop and 454/461 describe sessions and transports, while
403 says the request was understood and is refused whatever the credentials. The reason in the
log line and the response body says to use ``rtsps://`` / ``https://``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Encryption = Literal["no", "optional", "strict"]

ENCRYPTION_REQUIRED = 403


@dataclass(frozen=True)
class Refusal:
    status: int
    reason: str  # for the log line and the response body


def decide(policy: str, secure: bool, profile: str | None = None) -> Refusal | None:
    """None when the request may go on under ``policy``; else the status and reason to refuse.

    ``secure``: the request arrived over TLS. ``profile``: the transport profile a SETUP asks
    for (e.g. "RTP/AVP", "RTP/AVP/TCP", "RTP/SAVP"), None for other requests. Media interleaved
    in a secure connection is encrypted by TLS whatever its profile.
    """
    if policy != "strict" or secure:
        return None
    return Refusal(
        ENCRYPTION_REQUIRED, "encryption required: plain connections are refused (use rtsps:// or https://)"
    )
