"""RFC 7741 VP8 payload format: descriptors, picture IDs, round trips, loss and garbage input."""

from __future__ import annotations

from fractions import Fraction

from hypothesis import given, settings
from hypothesis import strategies as st

from media.access_unit import AccessUnit
from media.track import Track
from streamd.rtp.payload.vp8 import Vp8Depacketizer, Vp8Format, parse_descriptor

TRACK = Track(0, "video", "vp8", Fraction(1, 1000), frame_rate=Fraction(25))


def au(data: bytes, keyframe: bool = False, dts: int = 0) -> AccessUnit:
    return AccessUnit(0, dts, dts, keyframe, data)


def test_sdp() -> None:
    fmt = Vp8Format(TRACK, 97)
    assert (fmt.rtpmap(), fmt.fmtp(), fmt.media) == ("97 VP8/90000", None, "video")


def test_descriptor_and_picture_ids() -> None:
    fmt = Vp8Format(TRACK, max_payload_size=104)
    packets = fmt.packetize(au(bytes(250)))
    assert [p[:4] for p, _ in packets] == [b"\x90\x80\x80\x00", b"\x80\x80\x80\x00", b"\x80\x80\x80\x00"]
    assert [m for _, m in packets] == [False, False, True]
    assert fmt.packetize(au(b"x", dts=40))[0][0][:4] == b"\x90\x80\x80\x01"  # DTS in frame periods
    assert fmt.packetize(au(b"x", dts=40 * 0x7FFF))[0][0][2:4] == b"\xff\xff"
    assert fmt.packetize(au(b"x", dts=40 * 0x8000))[0][0][2:4] == b"\x80\x00"  # wraps at 15 bits
    no_rate = Vp8Format(Track(0, "video", "vp8", Fraction(1, 1000)))
    assert no_rate.packetize(au(b"x"))[0][0] == b"\x90\x00x"  # no frame rate: no picture ID


def test_parse_descriptor_forms() -> None:
    assert parse_descriptor(b"\x10abc") == (True, 0, None, 1)
    assert parse_descriptor(b"\x90\x80\x05x") == (True, 0, 5, 3)
    assert parse_descriptor(b"\x83\xf0\x81\x02\x07\x08x") == (False, 3, 0x102, 6)
    assert parse_descriptor(b"\x80") is None


def test_lost_packet_loses_the_frame() -> None:
    fmt = Vp8Format(TRACK, max_payload_size=100)
    d = Vp8Depacketizer()
    first, second = fmt.packetize(au(bytes(300))), fmt.packetize(au(b"\x01" * 50))
    out = [u for i, (p, m) in enumerate(first) if i != 1 for u in d.push(p, m, 0, i)]
    out += [u for p, m in second for u in d.push(p, m, 3000, 10)]
    assert [u.data for u in out] == [b"\x01" * 50]


@settings(max_examples=150, deadline=None)
@given(st.lists(st.binary(min_size=1, max_size=4000), min_size=1, max_size=4), st.integers(5, 1500))
def test_roundtrip(frames: list[bytes], limit: int) -> None:
    fmt = Vp8Format(TRACK, max_payload_size=limit)
    d = fmt.depacketizer()
    out, seq = [], 0
    for i, frame in enumerate(frames):
        for payload, marker in fmt.packetize(au(frame)):
            assert len(payload) <= limit
            out += [u.data for u in d.push(payload, marker, i * 3000, seq)]
            seq += 1
    assert out == frames


@settings(max_examples=300)
@given(st.lists(st.tuples(st.binary(max_size=20), st.booleans(), st.integers(0, 3), st.integers(0, 0xFFFF))))
def test_garbage_never_raises(packets: list[tuple[bytes, bool, int, int]]) -> None:
    d = Vp8Depacketizer()
    for payload, marker, ts, seq in packets:
        d.push(payload, marker, ts, seq)
