"""Session Description Protocol (RFC 8866): a data model, a lenient parser and a writer.

Pure data: no I/O and no imports from the rest of streamd, so every layer above can use it.
"""

from .fmtp import FmtpParams, RtpMap, format_fmtp, format_rtpmap, parse_fmtp, parse_rtpmap, static_rtpmap
from .model import (
    Attribute,
    Bandwidth,
    Connection,
    MediaDescription,
    Origin,
    SessionDescription,
    Timing,
)
from .npt import format_npt
from .parser import MAX_SDP_BYTES, MAX_SDP_LINES, SdpParseError, parse
from .writer import write

__all__ = [
    "MAX_SDP_BYTES",
    "MAX_SDP_LINES",
    "Attribute",
    "Bandwidth",
    "Connection",
    "FmtpParams",
    "MediaDescription",
    "Origin",
    "RtpMap",
    "SdpParseError",
    "SessionDescription",
    "Timing",
    "format_fmtp",
    "format_npt",
    "format_rtpmap",
    "parse",
    "parse_fmtp",
    "parse_rtpmap",
    "static_rtpmap",
    "write",
]
