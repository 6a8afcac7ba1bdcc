"""RFC 2250 MPEG-1/2 video payload format: the video-specific header, slice packing, garbage input."""

from __future__ import annotations

from fractions import Fraction

from hypothesis import given, settings
from hypothesis import strategies as st

from media.access_unit import AccessUnit
from media.track import Track
from streamd.rtp.payload import payload_format_for
from streamd.rtp.payload.mpeg_video import MpegVideoDepacketizer, MpegVideoFormat, picture_fields

TRACK = Track(0, "video", "mpeg2video", Fraction(1, 90000))
SEQUENCE = b"\x00\x00\x01\xb3" + bytes(8)
GOP = b"\x00\x00\x01\xb8" + bytes(4)


def picture(temporal_reference: int, picture_type: int, codes: int = 0) -> bytes:
    bits = (temporal_reference << 22) | (picture_type << 19) | (0xFFFF << 3) | (codes >> 5)
    return b"\x00\x00\x01\x00" + bits.to_bytes(4, "big") + bytes([(codes << 3) & 0xF8])


def slice_(number: int, size: int) -> bytes:
    return b"\x00\x00\x01" + bytes([number]) + bytes([0x5A]) * (size - 4)


def au(data: bytes) -> AccessUnit:
    return AccessUnit(0, 0, 0, False, data)


def test_sdp_uses_static_payload_type_32() -> None:
    fmt = payload_format_for(Track(0, "video", "mpeg1video", Fraction(1, 90000)), 99)
    assert (fmt.payload_type, fmt.rtpmap(), fmt.fmtp()) == (32, "32 MPV/90000", None)


def test_picture_fields() -> None:
    assert picture_fields(picture(5, 1)) == (5 << 16) | (1 << 8)
    # B picture: FFV=1 FFC=3, FBV=0 BFC=2 (codes = FFV FFC FBV BFC, 8 bits)
    assert picture_fields(picture(1023, 3, 0b1011_0010)) == (1023 << 16) | (3 << 8) | (0b0010 << 4) | 0b1011
    assert picture_fields(b"no picture here") == 0


def test_headers_lead_the_first_packet_and_slices_are_not_split() -> None:
    data = SEQUENCE + GOP + picture(7, 1) + slice_(1, 500) + slice_(2, 500) + slice_(3, 500)
    packets = MpegVideoFormat(TRACK, max_payload_size=1100).packetize(au(data))
    headers = [int.from_bytes(p[:4], "big") for p, _ in packets]
    assert [h & 0x3800 for h in headers] == [0x3800, 0x1800]  # S+B+E, then B+E
    assert all(h >> 16 == 7 and (h >> 8) & 7 == 1 for h in headers)
    assert packets[0][0][4:] == SEQUENCE + GOP + picture(7, 1) + slice_(1, 500) + slice_(2, 500)
    assert packets[1][0][4:] == slice_(3, 500)
    assert [m for _, m in packets] == [False, True]


def test_a_large_slice_is_split_with_b_and_e() -> None:
    data = picture(0, 2) + slice_(1, 3000)
    packets = MpegVideoFormat(TRACK, max_payload_size=1004).packetize(au(data))
    flags = [int.from_bytes(p[:4], "big") & 0x1800 for p, _ in packets]
    assert flags == [0x1800, 0x1000, 0, 0x0800]  # the picture header alone, then the slice in three


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.lists(st.integers(4, 3000), min_size=1, max_size=6), min_size=1, max_size=3),
    st.integers(5, 1500),
)
def test_roundtrip(pictures: list[list[int]], limit: int) -> None:
    fmt = MpegVideoFormat(TRACK, max_payload_size=limit)
    d = fmt.depacketizer()
    sources = [
        picture(i, 1) + b"".join(slice_(n + 1, s) for n, s in enumerate(sizes))
        for i, sizes in enumerate(pictures)
    ]
    out, seq = [], 0
    for i, data in enumerate(sources):
        for payload, marker in fmt.packetize(au(data)):
            assert len(payload) <= limit
            out += [u.data for u in d.push(payload, marker, i * 3600, seq)]
            seq += 1
    assert out == sources


@settings(max_examples=300)
@given(st.lists(st.tuples(st.binary(max_size=20), st.booleans(), st.integers(0, 3), st.integers(0, 0xFFFF))))
def test_garbage_never_raises(packets: list[tuple[bytes, bool, int, int]]) -> None:
    d = MpegVideoDepacketizer()
    for payload, marker, ts, seq in packets:
        d.push(payload, marker, ts, seq)
