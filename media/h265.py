"""H.265/HEVC bitstream helpers: NAL unit types, parameter sets, and the hvcC record.

The framing is H.264's (Annex B start codes in raw streams and MPEG-TS, length prefixes in MP4
and Matroska), so splitting reuses :mod:`media.h264`. What differs is the two-byte NAL unit
header (type in bits 1..6 of the first byte) and the HEVCDecoderConfigurationRecord (hvcC,
ISO 14496-15 8.3.3.1), which lists VPS, SPS and PPS in typed arrays.
"""

from __future__ import annotations

from collections.abc import Iterable

from media.errors import MediaError
from media.h264 import split_annexb, split_length_prefixed, to_annexb
from media.track import H265Config

__all__ = [
    "NAL_AUD",
    "NAL_PPS",
    "NAL_SPS",
    "NAL_VPS",
    "config_from_extradata",
    "config_from_nals",
    "is_irap",
    "is_rasl",
    "may_lead_rasl",
    "nal_type",
    "parse_hvcc",
    "split_annexb",
    "split_length_prefixed",
    "to_annexb",
]

NAL_VPS = 32
NAL_SPS = 33
NAL_PPS = 34
NAL_AUD = 35
NAL_FD = 38  # filler data
IRAP_TYPES = range(16, 22)  # BLA_W_LP .. CRA_NUT: random access points a decoder can start at
RASL_TYPES = (8, 9)  # leading pictures that reference pictures from before their CRA (open GOP)
_WITH_RASL = (16, 21)  # BLA_W_LP and CRA_NUT may be followed by RASL pictures
_VCL_TYPES = range(0, 32)

_START = b"\x00\x00\x01"
_HVCC_HEADER = 23  # bytes before the first NAL unit array


def nal_type(nal: bytes) -> int:
    """The nal_unit_type (bits 1..6 of the first header byte); -1 for an empty NAL unit."""
    return (nal[0] >> 1) & 0x3F if nal else -1


def is_irap(nal: bytes) -> bool:
    """True for IDR, CRA and BLA pictures: where decoding can start (with VPS/SPS/PPS)."""
    return nal_type(nal) in IRAP_TYPES


def may_lead_rasl(nal_units: Iterable[bytes]) -> bool:
    """True for a CRA (or BLA_W_LP) access unit: an open GOP, whose RASL pictures (decoded after
    it, shown before it) cannot be decoded when decoding starts at it (H.265 8.1.3)."""
    return any(nal_type(n) in _WITH_RASL for n in nal_units)


def is_rasl(nal_units: Iterable[bytes]) -> bool:
    """True when the access unit's picture is a RASL picture (every slice RASL_N or RASL_R)."""
    vcl = [nal_type(n) for n in nal_units if nal_type(n) in _VCL_TYPES]
    return bool(vcl) and all(t in RASL_TYPES for t in vcl)


def parse_hvcc(extradata: bytes) -> H265Config:
    """Parse an HEVCDecoderConfigurationRecord; MediaError if it is not one or is truncated."""
    data = bytes(extradata)
    if len(data) < _HVCC_HEADER:
        raise MediaError(f"hvcC too short ({len(data)} bytes)")
    if data[0] != 1:
        raise MediaError(f"hvcC configurationVersion is {data[0]}, expected 1")
    nal_length_size = (data[21] & 0x03) + 1
    if nal_length_size == 3:
        raise MediaError("hvcC lengthSizeMinusOne is 2, which ISO 14496-15 does not allow")
    nals: list[bytes] = []
    pos = _HVCC_HEADER
    for _ in range(data[22]):
        if pos + 3 > len(data):
            raise MediaError("hvcC truncated in its NAL unit arrays")
        count = int.from_bytes(data[pos + 1 : pos + 3], "big")
        pos += 3
        for _ in range(count):
            if pos + 2 > len(data):
                raise MediaError("hvcC truncated in a NAL unit length")
            length = int.from_bytes(data[pos : pos + 2], "big")
            pos += 2
            if pos + length > len(data):
                raise MediaError(f"hvcC NAL unit of {length} bytes runs past the end")
            nals.append(data[pos : pos + length])
            pos += length
    return config_from_nals(nals, nal_length_size)


def config_from_nals(nals: Iterable[bytes], nal_length_size: int | None = None) -> H265Config:
    """The distinct VPS, SPS and PPS among ``nals``, in order of appearance."""
    sets: dict[int, list[bytes]] = {NAL_VPS: [], NAL_SPS: [], NAL_PPS: []}
    for nal in nals:
        found = sets.get(nal_type(nal))
        if found is not None and nal not in found:
            found.append(nal)
    return H265Config(
        vps=tuple(sets[NAL_VPS]),
        sps=tuple(sets[NAL_SPS]),
        pps=tuple(sets[NAL_PPS]),
        nal_length_size=nal_length_size,
    )


def config_from_extradata(extradata: bytes) -> H265Config | None:
    """hvcC (version byte 1) or Annex B extradata; None when it holds no complete set of VPS/SPS/PPS."""
    data = bytes(extradata)
    if not data:
        return None
    if data[0] == 1:
        config = parse_hvcc(data)
    elif data.startswith(_START) or data.startswith(b"\x00" + _START):
        config = config_from_nals(split_annexb(data))
    else:
        raise MediaError(f"H.265 extradata is neither hvcC nor Annex B (starts {data[:4].hex()})")
    return config if complete(config) else None


def complete(config: H265Config) -> bool:
    """A decoder needs all three kinds of parameter set."""
    return bool(config.vps and config.sps and config.pps)
