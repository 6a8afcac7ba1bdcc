"""H.264 bitstream helpers: NAL unit framing (Annex B and length-prefixed) and parameter sets.

MP4 and Matroska store NAL units with a length prefix and the SPS/PPS in an
AVCDecoderConfigurationRecord (avcC, ISO 14496-15 5.3.3.1); raw streams and MPEG-TS use Annex B
start codes. RTP (RFC 6184) wants bare NAL units, and SDP the SPS/PPS, so the reader converts
every form to a tuple of NAL units.
"""

from __future__ import annotations

from collections.abc import Iterable

from media.errors import MediaError
from media.track import H264Config

NAL_SLICE = 1
NAL_IDR = 5
NAL_SEI = 6
NAL_SPS = 7
NAL_PPS = 8
NAL_AUD = 9

_START = b"\x00\x00\x01"


def nal_type(nal: bytes) -> int:
    """The nal_unit_type (low 5 bits of the first byte); -1 for an empty NAL unit."""
    return nal[0] & 0x1F if nal else -1


def split_annexb(data: bytes) -> list[bytes]:
    """Split an Annex B byte stream at 3- and 4-byte start codes.

    Zero bytes before a start code belong to it (a 4-byte start code, or trailing_zero_8bits),
    not to the NAL unit before, so they are stripped. Bytes before the first start code and empty
    NAL units are dropped. Never raises: any byte string splits somehow.
    """
    nals: list[bytes] = []
    pos = data.find(_START)
    while pos >= 0:
        begin = pos + 3
        nxt = data.find(_START, begin)
        end = len(data) if nxt < 0 else nxt
        nal = data[begin:end].rstrip(b"\x00")
        if nal:
            nals.append(nal)
        pos = nxt
    return nals


def split_length_prefixed(data: bytes, nal_length_size: int) -> list[bytes]:
    """Split NAL units each preceded by a big-endian length of ``nal_length_size`` (1..4) bytes.

    Raises MediaError when a length runs past the end of the data: the packet is truncated or is
    not in this framing at all, and guessing would hand garbage to a decoder.
    """
    if nal_length_size not in (1, 2, 3, 4):
        raise MediaError(f"invalid H.264 NAL length size {nal_length_size}")
    nals: list[bytes] = []
    pos = 0
    total = len(data)
    while pos < total:
        if pos + nal_length_size > total:
            raise MediaError(f"H.264 packet truncated: {total - pos} stray bytes after the last NAL unit")
        length = int.from_bytes(data[pos : pos + nal_length_size], "big")
        pos += nal_length_size
        if pos + length > total:
            raise MediaError(
                f"H.264 NAL unit length {length} runs past the packet end ({total - pos} bytes left)"
            )
        if length:
            nals.append(data[pos : pos + length])
        pos += length
    return nals


def to_annexb(nals: Iterable[bytes]) -> bytes:
    """Join NAL units with 4-byte start codes."""
    return b"".join(b"\x00\x00\x00\x01" + nal for nal in nals)


def to_length_prefixed(nals: Iterable[bytes], nal_length_size: int = 4) -> bytes:
    """Join NAL units with big-endian length prefixes (the MP4/avcC framing)."""
    limit = 1 << (8 * nal_length_size)
    out = bytearray()
    for nal in nals:
        if len(nal) >= limit:
            raise MediaError(f"NAL unit of {len(nal)} bytes does not fit a {nal_length_size}-byte length")
        out += len(nal).to_bytes(nal_length_size, "big") + nal
    return bytes(out)


def parse_avcc(extradata: bytes) -> H264Config:
    """Parse an AVCDecoderConfigurationRecord (avcC box payload).

    Raises MediaError if it is not one (wrong version, or truncated). The high-profile
    extension after the PPS list (chroma format, bit depths, SPS extensions) is ignored.
    """
    data = bytes(extradata)
    if len(data) < 7:
        raise MediaError(f"avcC too short ({len(data)} bytes)")
    if data[0] != 1:
        raise MediaError(f"avcC configurationVersion is {data[0]}, expected 1")
    nal_length_size = (data[4] & 0x03) + 1
    sps, pos = _parameter_sets(data, 6, data[5] & 0x1F, "SPS")
    if pos >= len(data):
        raise MediaError("avcC truncated before the PPS count")
    pps, _ = _parameter_sets(data, pos + 1, data[pos], "PPS")
    return H264Config(sps=tuple(sps), pps=tuple(pps), nal_length_size=nal_length_size)


def _parameter_sets(data: bytes, pos: int, count: int, what: str) -> tuple[list[bytes], int]:
    """``count`` sets, each with a 16-bit length, from ``pos``; returns them and the end offset."""
    sets: list[bytes] = []
    for _ in range(count):
        if pos + 2 > len(data):
            raise MediaError(f"avcC truncated in the {what} list")
        length = int.from_bytes(data[pos : pos + 2], "big")
        pos += 2
        if pos + length > len(data):
            raise MediaError(f"avcC {what} of {length} bytes runs past the end")
        sets.append(data[pos : pos + length])
        pos += length
    return sets, pos


def build_avcc(config: H264Config) -> bytes:
    """An AVCDecoderConfigurationRecord for ``config`` (e.g. to record a live stream to MP4)."""
    if not config.sps:
        raise MediaError("cannot build avcC without an SPS")
    sps0 = config.sps[0]
    if len(sps0) < 4:
        raise MediaError("SPS too short for avcC")
    length_size = config.nal_length_size or 4
    out = bytearray([1, sps0[1], sps0[2], sps0[3], 0xFC | (length_size - 1), 0xE0 | len(config.sps)])
    for sps in config.sps:
        out += len(sps).to_bytes(2, "big") + sps
    out.append(len(config.pps))
    for pps in config.pps:
        out += len(pps).to_bytes(2, "big") + pps
    return bytes(out)


def config_from_nals(nals: Iterable[bytes], nal_length_size: int | None = None) -> H264Config:
    """Collect the distinct SPS (type 7) and PPS (type 8) among ``nals``, in order of appearance."""
    sps: list[bytes] = []
    pps: list[bytes] = []
    for nal in nals:
        kind = nal_type(nal)
        if kind == NAL_SPS and nal not in sps:
            sps.append(nal)
        elif kind == NAL_PPS and nal not in pps:
            pps.append(nal)
    return H264Config(sps=tuple(sps), pps=tuple(pps), nal_length_size=nal_length_size)


def config_from_annexb(data: bytes) -> H264Config:
    """The SPS and PPS found in an Annex B byte stream (extradata of raw/TS input, or a keyframe)."""
    return config_from_nals(split_annexb(data))


def config_from_extradata(extradata: bytes) -> H264Config | None:
    """Parse extradata in either form (avcC starts with version 1; Annex B with a start code).

    Returns None when it holds no SPS, so the caller knows to look in the packets instead.
    """
    data = bytes(extradata)
    if not data:
        return None
    if data[0] == 1:
        config = parse_avcc(data)
    elif data.startswith(_START) or data.startswith(b"\x00" + _START):
        config = config_from_annexb(data)
    else:
        raise MediaError(f"H.264 extradata is neither avcC nor Annex B (starts {data[:4].hex()})")
    return config if config.sps else None


def profile_level_id(sps: bytes) -> str:
    """profile_idc, constraint flags and level_idc as six hex digits (SDP ``profile-level-id``)."""
    if len(sps) < 4:
        raise MediaError(f"SPS too short ({len(sps)} bytes) for profile-level-id")
    return sps[1:4].hex()
