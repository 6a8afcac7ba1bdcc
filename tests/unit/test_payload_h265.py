"""RFC 7798 H.265 payload format: hand-checked packets, round trips, loss and garbage input."""

from __future__ import annotations

import base64
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from media.access_unit import AccessUnit
from media.track import H265Config, Track
from streamd.rtp.payload import UnsupportedCodec
from streamd.rtp.payload.h265 import AP, FU, H265Depacketizer, H265Format
from tests.unit.test_h265_bitstream import IDR, PPS, SPS, VPS


def track() -> Track:
    config = H265Config(vps=(VPS,), sps=(SPS,), pps=(PPS,), nal_length_size=4)
    return Track(index=0, kind="video", codec="hevc", time_base=Fraction(1, 90000), config=config)


def au(*nals: bytes) -> AccessUnit:
    return AccessUnit(0, 0, 0, False, b"".join(b"\x00\x00\x00\x01" + n for n in nals), nals)


def nal(kind: int, size: int, tid: int = 1) -> bytes:
    return bytes([kind << 1, tid]) + bytes([0xAB]) * (size - 2)


def roundtrip(fmt: H265Format, *units: AccessUnit) -> list[tuple[bytes, ...]]:
    d = fmt.depacketizer()
    out, seq = [], 0
    for i, unit in enumerate(units):
        for payload, marker in fmt.packetize(unit):
            assert len(payload) <= fmt.max_payload_size
            out += [u.nal_units for u in d.push(payload, marker, i * 3000, seq)]
            seq += 1
    return out


def test_sdp() -> None:
    fmt = H265Format(track(), payload_type=98)
    assert fmt.rtpmap() == "98 H265/90000"
    b64 = [base64.b64encode(p).decode() for p in (VPS, SPS, PPS)]
    assert fmt.fmtp() == f"98 sprop-vps={b64[0]};sprop-sps={b64[1]};sprop-pps={b64[2]}"


def test_needs_parameter_sets() -> None:
    with pytest.raises(UnsupportedCodec, match="VPS/SPS/PPS"):
        H265Format(Track(0, "video", "hevc", Fraction(1, 90000)))


def test_parameter_sets_go_in_band_before_an_irap_that_lacks_them() -> None:
    packets = H265Format(track()).packetize(au(IDR))
    assert len(packets) == 1 and packets[0][1]
    payload = packets[0][0]
    assert (payload[0] >> 1) & 0x3F == AP
    assert roundtrip(H265Format(track()), au(IDR)) == [(VPS, SPS, PPS, IDR)]
    assert roundtrip(H265Format(track()), au(VPS, SPS, PPS, IDR)) == [(VPS, SPS, PPS, IDR)]
    trailing = nal(1, 50)
    assert roundtrip(H265Format(track()), au(trailing)) == [(trailing,)]


def test_aud_and_unspecified_types_are_not_sent() -> None:
    slice_ = nal(1, 30)
    assert roundtrip(H265Format(track()), au(nal(35, 3), slice_, nal(48, 10))) == [(slice_,)]


def test_fragmentation_unit_headers() -> None:
    big = nal(19, 3000, tid=1)
    packets = H265Format(track(), max_payload_size=1000).packetize(au(VPS, SPS, PPS, big))
    fus = [p for p, _ in packets if (p[0] >> 1) & 0x3F == FU]
    assert len(fus) == 4
    assert [p[2] for p in fus] == [0x80 | 19, 19, 19, 0x40 | 19]
    assert all(p[1] == 1 for p in fus)  # LayerId 0, TID 1 copied
    assert b"".join(p[3:] for p in fus) == big[2:]


def test_lost_fragment_drops_only_that_nal_unit() -> None:
    fmt = H265Format(track(), max_payload_size=500)
    small, big = nal(1, 20), nal(1, 2000)
    packets = fmt.packetize(au(small, big))
    d = H265Depacketizer()
    out = [u for i, (p, m) in enumerate(packets) if i != 2 for u in d.push(p, m, 0, i)]
    assert [u.nal_units for u in out] == [(small,)]


nal_units = st.builds(
    lambda kind, tid, body: bytes([kind << 1, tid]) + body,
    st.sampled_from([0, 1, 9, 19, 20, 21, 39, 40]),
    st.integers(1, 7),
    st.binary(min_size=1, max_size=3000),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.lists(nal_units, min_size=1, max_size=6), min_size=1, max_size=4), st.integers(4, 1500))
def test_roundtrip(units: list[list[bytes]], limit: int) -> None:
    fmt = H265Format(track(), max_payload_size=limit)
    expected = []
    for nals in units:
        types = [(n[0] >> 1) & 0x3F for n in nals]
        irap = any(t in range(16, 22) for t in types)
        expected.append((VPS, SPS, PPS, *nals) if irap else tuple(nals))
    assert roundtrip(fmt, *(au(*nals) for nals in units)) == expected


@settings(max_examples=300)
@given(st.lists(st.tuples(st.binary(max_size=40), st.booleans(), st.integers(0, 3), st.integers(0, 0xFFFF))))
def test_garbage_never_raises(packets: list[tuple[bytes, bool, int, int]]) -> None:
    d = H265Depacketizer()
    for payload, marker, ts, seq in packets:
        for unit in d.push(payload, marker, ts, seq):
            assert all(len(n) >= 3 for n in unit.nal_units)
