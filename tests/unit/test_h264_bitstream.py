"""H.264 framing and parameter-set helpers: hand-made vectors and properties."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from media import h264
from media.errors import MediaError
from media.track import H264Config

SPS = bytes.fromhex("6742c01e95a0f0")
PPS = bytes.fromhex("68ce3c80")
IDR = bytes.fromhex("658884")


# -- Annex B ----------------------------------------------------------------------------------


def test_split_annexb_mixed_start_codes() -> None:
    data = b"\x00\x00\x00\x01" + SPS + b"\x00\x00\x01" + PPS + b"\x00\x00\x00\x01" + IDR
    assert h264.split_annexb(data) == [SPS, PPS, IDR]


def test_split_annexb_strips_zeros_before_next_start_code_and_at_end() -> None:
    data = b"\x00\x00\x01\x09\xf0\x00\x00\x00\x00\x01" + IDR + b"\x00\x00"
    assert h264.split_annexb(data) == [b"\x09\xf0", IDR]


def test_split_annexb_ignores_leading_garbage_and_empty_units() -> None:
    assert h264.split_annexb(b"\xff\xee\x00\x00\x01\x00\x00\x01\x41\x9a") == [b"\x41\x9a"]
    assert h264.split_annexb(b"no start code") == []
    assert h264.split_annexb(b"") == []


def test_split_annexb_keeps_emulation_prevention() -> None:
    nal = b"\x41\x00\x00\x03\x01\x00\x00\x03\x00\x80"
    assert h264.split_annexb(b"\x00\x00\x01" + nal) == [nal]


def test_to_annexb_uses_four_byte_start_codes() -> None:
    assert h264.to_annexb([SPS, PPS]) == b"\x00\x00\x00\x01" + SPS + b"\x00\x00\x00\x01" + PPS
    assert h264.to_annexb([]) == b""


# -- length-prefixed --------------------------------------------------------------------------


@pytest.mark.parametrize("size", [1, 2, 4])
def test_split_length_prefixed(size: int) -> None:
    data = b"".join(len(n).to_bytes(size, "big") + n for n in (SPS, PPS, IDR))
    assert h264.split_length_prefixed(data, size) == [SPS, PPS, IDR]


def test_split_length_prefixed_skips_zero_length_units() -> None:
    assert h264.split_length_prefixed(b"\x00\x00\x00\x00\x00\x00\x00\x02\x41\x9a", 4) == [b"\x41\x9a"]


@pytest.mark.parametrize(
    "data",
    [
        b"\x00\x00\x00\x09\x41\x9a",  # length past the end
        b"\x00\x00\x00\x02\x41\x9a\x00\x00",  # stray bytes, too few for a length
        b"\x00\x00\x01",  # truncated length
    ],
)
def test_split_length_prefixed_rejects_inconsistent_lengths(data: bytes) -> None:
    with pytest.raises(MediaError):
        h264.split_length_prefixed(data, 4)


def test_split_length_prefixed_rejects_bad_size() -> None:
    with pytest.raises(MediaError):
        h264.split_length_prefixed(b"\x00", 0)


def test_to_length_prefixed_rejects_oversized_unit() -> None:
    with pytest.raises(MediaError):
        h264.to_length_prefixed([b"\x41" * 256], 1)


# -- avcC and parameter sets ------------------------------------------------------------------

AVCC = bytes.fromhex("0142c01effe1") + len(SPS).to_bytes(2, "big") + SPS + b"\x01" + b"\x00\x04" + PPS


def test_parse_avcc() -> None:
    config = h264.parse_avcc(AVCC)
    assert config == H264Config(sps=(SPS,), pps=(PPS,), nal_length_size=4)


def test_parse_avcc_two_byte_lengths_and_high_profile_tail() -> None:
    data = bytearray(AVCC)
    data[4] = 0xFD  # lengthSizeMinusOne = 1
    data += bytes.fromhex("fdf8f800")  # chroma/bit-depth extension of high profiles: ignored
    assert h264.parse_avcc(bytes(data)).nal_length_size == 2


@pytest.mark.parametrize(
    "data",
    [b"", b"\x01\x42\xc0", b"\x00" + AVCC[1:], AVCC[:-2], AVCC[:9], AVCC[: 8 + len(SPS)]],
)
def test_parse_avcc_rejects_bad_records(data: bytes) -> None:
    with pytest.raises(MediaError):
        h264.parse_avcc(data)


def test_build_avcc_round_trip() -> None:
    config = H264Config(sps=(SPS,), pps=(PPS, PPS[:-1] + b"\x81"), nal_length_size=4)
    assert h264.build_avcc(config)[:4] == bytes.fromhex("0142c01e")
    assert h264.parse_avcc(h264.build_avcc(config)) == config


def test_config_from_annexb_collects_distinct_parameter_sets() -> None:
    data = h264.to_annexb([b"\x09\xf0", SPS, PPS, SPS, IDR])
    assert h264.config_from_annexb(data) == H264Config(sps=(SPS,), pps=(PPS,), nal_length_size=None)


def test_config_from_extradata_both_forms() -> None:
    assert h264.config_from_extradata(AVCC) == h264.parse_avcc(AVCC)
    annexb = b"\x00\x00\x01" + SPS + b"\x00\x00\x00\x01" + PPS
    assert h264.config_from_extradata(annexb) == H264Config((SPS,), (PPS,), None)
    assert h264.config_from_extradata(b"") is None
    assert h264.config_from_extradata(h264.to_annexb([PPS])) is None  # no SPS: look in packets
    with pytest.raises(MediaError):
        h264.config_from_extradata(b"\x17garbage")


def test_nal_type_and_profile_level_id() -> None:
    assert [h264.nal_type(n) for n in (SPS, PPS, IDR, b"\x41", b"")] == [7, 8, 5, 1, -1]
    assert h264.profile_level_id(SPS) == "42c01e"
    assert h264.profile_level_id(bytes.fromhex("674d4014ec")) == "4d4014"
    with pytest.raises(MediaError):
        h264.profile_level_id(b"\x67\x42")


# -- properties -------------------------------------------------------------------------------


def _escape(rbsp: bytes) -> bytes:
    """Insert emulation prevention bytes, as an encoder does, so no start code can appear."""
    out = bytearray()
    zeros = 0
    for b in rbsp:
        if zeros >= 2 and b <= 3:
            out.append(3)
            zeros = 0
        out.append(b)
        zeros = zeros + 1 if b == 0 else 0
    return bytes(out)


nal_units = st.builds(
    lambda header, body: bytes([header]) + _escape(body + b"\x80"),
    st.integers(1, 0x7F),
    st.binary(max_size=64),
)


@given(st.lists(nal_units, max_size=8))
def test_annexb_round_trip(nals: list[bytes]) -> None:
    assert h264.split_annexb(h264.to_annexb(nals)) == nals


@given(st.lists(st.binary(min_size=1, max_size=300), max_size=8), st.sampled_from([2, 3, 4]))
def test_length_prefixed_round_trip(nals: list[bytes], size: int) -> None:
    assert h264.split_length_prefixed(h264.to_length_prefixed(nals, size), size) == nals


@given(st.binary(max_size=200))
def test_split_annexb_never_raises(data: bytes) -> None:
    for nal in h264.split_annexb(data):
        assert nal and b"\x00\x00\x01" not in nal and not nal.endswith(b"\x00")


@given(st.binary(max_size=200), st.sampled_from([1, 2, 4]))
def test_split_length_prefixed_only_raises_media_error(data: bytes, size: int) -> None:
    try:
        nals = h264.split_length_prefixed(data, size)
    except MediaError:
        return
    assert sum(len(n) for n in nals) <= len(data)


@given(st.binary(max_size=100))
def test_parse_avcc_only_raises_media_error(data: bytes) -> None:
    with contextlib.suppress(MediaError):
        h264.parse_avcc(data)


@given(st.binary(max_size=100))
def test_config_from_extradata_only_raises_media_error(data: bytes) -> None:
    with contextlib.suppress(MediaError):
        h264.config_from_extradata(data)


@given(
    st.lists(st.binary(min_size=4, max_size=40).map(lambda b: b"\x67" + b[1:]), min_size=1, max_size=3),
    st.lists(st.binary(min_size=1, max_size=20), max_size=3),
    st.sampled_from([1, 2, 4]),
)
def test_avcc_round_trip(sps: list[bytes], pps: list[bytes], size: int) -> None:
    config = H264Config(sps=tuple(sps), pps=tuple(pps), nal_length_size=size)
    assert h264.parse_avcc(h264.build_avcc(config)) == config
