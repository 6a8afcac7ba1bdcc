"""H.265 bitstream helpers: NAL types, hvcC parsing, configs from extradata in both framings."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from media import h265
from media.errors import MediaError

VPS = bytes.fromhex("40010c01ffff016000000300900000030000030078959809")
SPS = bytes.fromhex(
    "420101016000000300900000030000030078a00502016965959a4932bc05a80808082000000300200000030321"
)
PPS = bytes.fromhex("4401c172b46240")
IDR = bytes.fromhex("2601af")


def hvcc(length_size: int = 4, sets: tuple[bytes, ...] = (VPS, SPS, PPS)) -> bytes:
    header = bytearray(23)
    header[0] = 1
    header[21] = 0xFC | (length_size - 1)
    header[22] = len(sets)
    for ps in sets:
        header += bytes([0x80 | h265.nal_type(ps)]) + (1).to_bytes(2, "big") + len(ps).to_bytes(2, "big") + ps
    return bytes(header)


def test_nal_types() -> None:
    assert [h265.nal_type(n) for n in (VPS, SPS, PPS, IDR)] == [32, 33, 34, 19]
    assert h265.nal_type(b"") == -1
    assert h265.is_irap(IDR) and not h265.is_irap(PPS)
    assert h265.is_irap(bytes([21 << 1, 1])) and not h265.is_irap(bytes([22 << 1, 1]))


def test_open_gop_leading_pictures() -> None:
    def nal(kind: int) -> bytes:
        return bytes([kind << 1, 1, 0xAF])

    assert h265.may_lead_rasl([VPS, SPS, PPS, nal(21)]) and h265.may_lead_rasl([nal(16)])
    assert not h265.may_lead_rasl([VPS, SPS, PPS, IDR]), "an IDR closes its GOP"
    assert h265.is_rasl([nal(8)]) and h265.is_rasl([nal(35), nal(9), nal(9)])
    assert not h265.is_rasl([nal(6)]), "RADL pictures decode from the CRA on"
    assert not h265.is_rasl([nal(1)]) and not h265.is_rasl([]) and not h265.is_rasl([PPS])


def test_parse_hvcc() -> None:
    config = h265.parse_hvcc(hvcc(length_size=2))
    assert (config.vps, config.sps, config.pps, config.nal_length_size) == ((VPS,), (SPS,), (PPS,), 2)


def test_config_from_annex_b_extradata() -> None:
    config = h265.config_from_extradata(b"".join(b"\x00\x00\x00\x01" + n for n in (VPS, SPS, PPS)))
    assert config is not None and config.nal_length_size is None and config.pps == (PPS,)


def test_incomplete_extradata_means_look_in_the_packets() -> None:
    assert h265.config_from_extradata(hvcc(sets=(VPS, SPS))) is None
    assert h265.config_from_extradata(b"") is None


@pytest.mark.parametrize(
    "data", [b"\x01", hvcc()[:30], hvcc()[:-3], b"\x02" + hvcc()[1:], hvcc(length_size=3)]
)
def test_bad_hvcc_is_a_media_error(data: bytes) -> None:
    with pytest.raises(MediaError):
        h265.parse_hvcc(data)


def test_unknown_extradata_is_a_media_error() -> None:
    with pytest.raises(MediaError, match="neither hvcC nor Annex B"):
        h265.config_from_extradata(b"\x07abc")


@given(st.binary(max_size=200))
def test_parse_hvcc_only_raises_media_error(data: bytes) -> None:
    with contextlib.suppress(MediaError):
        h265.config_from_extradata(data)
