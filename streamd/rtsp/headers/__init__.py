"""Grammars of the RTSP headers with structure: parse what clients send, format what we reply."""

from streamd.rtsp.headers.range import NptRange, format_npt, format_range, parse_range
from streamd.rtsp.headers.rtp_info import RtpInfoEntry, format_rtp_info, parse_rtp_info
from streamd.rtsp.headers.session import format_session, parse_session
from streamd.rtsp.headers.transport import TransportSpec, format_transport, parse_transport

__all__ = [
    "NptRange",
    "RtpInfoEntry",
    "TransportSpec",
    "format_npt",
    "format_range",
    "format_rtp_info",
    "format_session",
    "format_transport",
    "parse_range",
    "parse_rtp_info",
    "parse_session",
    "parse_transport",
]
