"""The one error type of the RTSP layer: a status code and a reason a person can read.

Raised anywhere below the server shell; turned into a response in exactly one place
(:mod:`streamd.handlers.dispatch`), which also logs the reason with the client and path.
"""

from __future__ import annotations

STATUS_REASONS: dict[int, str] = {
    200: "OK",
    201: "Created",
    301: "Moved Permanently",
    302: "Moved Temporarily",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    406: "Not Acceptable",
    408: "Request Timeout",
    413: "Request Entity Too Large",
    414: "Request-URI Too Large",
    415: "Unsupported Media Type",
    451: "Parameter Not Understood",
    453: "Not Enough Bandwidth",
    454: "Session Not Found",
    455: "Method Not Valid in This State",
    456: "Header Field Not Valid for Resource",
    457: "Invalid Range",
    458: "Parameter Is Read-Only",
    459: "Aggregate Operation Not Allowed",
    460: "Only Aggregate Operation Allowed",
    461: "Unsupported Transport",
    462: "Destination Unreachable",
    466: "Key Management Error",  # RFC 7826 17.4.30: MIKEY/SDES keys that cannot be used
    500: "Internal Server Error",
    501: "Not Implemented",
    503: "Service Unavailable",
    505: "RTSP Version Not Supported",
    551: "Option Not Supported",
}


def reason_phrase(status: int) -> str:
    """The standard reason phrase for ``status`` (RFC 2326 section 7.1.1)."""
    return STATUS_REASONS.get(status, "Unknown")


class RtspError(Exception):
    """A request that cannot be honoured: ``status`` goes on the wire, ``reason`` into the log.

    ``body`` (optional, plain text) is sent to the client when the reason helps them too.
    """

    def __init__(self, status: int, reason: str, *, body: str | None = None) -> None:
        super().__init__(f"{status} {reason_phrase(status)}: {reason}")
        self.status = status
        self.reason = reason
        self.body = body
