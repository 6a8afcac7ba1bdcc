"""RTP payload formats: SDP attributes, packetizers and depacketizers, one module per codec."""

from .aac import AacDepacketizer, AacFormat
from .base import DepacketizedUnit, Depacketizer, PayloadFormat, UnsupportedCodec
from .h264 import H264Depacketizer, H264Format
from .registry import payload_format_for, supported_codecs

__all__ = [
    "AacDepacketizer",
    "AacFormat",
    "DepacketizedUnit",
    "Depacketizer",
    "H264Depacketizer",
    "H264Format",
    "PayloadFormat",
    "UnsupportedCodec",
    "payload_format_for",
    "supported_codecs",
]
