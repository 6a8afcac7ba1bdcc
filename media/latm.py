"""LATM (ISO 14496-3 1.7.3) as RFC 6416 ``MP4A-LATM`` carries AAC over RTP.

GStreamer's ``rtpmp4apay`` (and so ``rtspclientsink``) publishes AAC this way, with the
StreamMuxConfig out of band in the SDP (``cpresent=0;config=<hex>``). We read that config for
the AudioSpecificConfig and split each AudioMuxElement into its access units, so the audio can
be served as ``mpeg4-generic`` and recorded like any other AAC. One program, one layer and
frameLengthType 0 (what every such sender uses); anything else is a MediaError.
"""

from __future__ import annotations

from dataclasses import dataclass

from media.aac import BitReader, embedded_audio_specific_config
from media.errors import MediaError


@dataclass(frozen=True)
class StreamMuxConfig:
    audio_specific_config: bytes
    subframes: int  # access units per AudioMuxElement (numSubFrames + 1)


def parse_stream_mux_config(data: bytes) -> StreamMuxConfig:
    """The parts of a StreamMuxConfig we need; MediaError for what we cannot take apart."""
    bits = BitReader(data)
    version = bits.read(1)
    if version:
        if bits.read(1):  # audioMuxVersionA
            raise MediaError("LATM audioMuxVersionA 1 is reserved")
        _latm_value(bits)  # taraBufferFullness
    bits.read(1)  # allStreamsSameTimeFraming: one layer, so always in step
    subframes = bits.read(6) + 1
    if bits.read(4) != 0 or bits.read(3) != 0:
        raise MediaError("LATM with more than one program or layer is not supported")
    if version:
        length = _latm_value(bits)
        asc, _ = embedded_audio_specific_config(data, bits.position)
        bits.skip(length)  # the config and its fill bits
    else:
        asc, length = embedded_audio_specific_config(data, bits.position)
        bits.skip(length)
    if bits.read(3) != 0:
        raise MediaError("only LATM frameLengthType 0 (byte lengths per frame) is supported")
    return StreamMuxConfig(asc, subframes)


def split_audio_mux_element(payload: bytes, subframes: int) -> list[bytes]:
    """The access units of one AudioMuxElement (muxConfigPresent 0): for each, PayloadLengthInfo
    (bytes of 255 summed until one is not) then that many bytes. Trailing other data is ignored.
    """
    units = []
    pos = 0
    for _ in range(subframes):
        length = 0
        while True:
            if pos >= len(payload):
                raise MediaError("LATM element cut short in a length")
            byte = payload[pos]
            pos += 1
            length += byte
            if byte != 255:
                break
        if pos + length > len(payload):
            raise MediaError(f"LATM frame of {length} bytes but {len(payload) - pos} left")
        units.append(payload[pos : pos + length])
        pos += length
    return units


def build_audio_mux_element(units: list[bytes]) -> bytes:
    """The inverse of :func:`split_audio_mux_element` (for tests and senders)."""
    out = bytearray()
    for unit in units:
        out += b"\xff" * (len(unit) // 255) + bytes([len(unit) % 255]) + unit
    return bytes(out)


def _latm_value(bits: BitReader) -> int:
    value = 0
    for _ in range(bits.read(2) + 1):
        value = (value << 8) | bits.read(8)
    return value
