"""RFC 9628 VP9 payload format: descriptors, scalability structure, round trips, garbage input."""

from __future__ import annotations

from fractions import Fraction

from hypothesis import given, settings
from hypothesis import strategies as st

from media.access_unit import AccessUnit
from media.track import Track
from streamd.rtp.payload.vp9 import Vp9Depacketizer, Vp9Format, descriptor_size

TRACK = Track(0, "video", "vp9", Fraction(1, 1000), width=320, height=240, frame_rate=Fraction(25))


def au(data: bytes, keyframe: bool = False, dts: int = 0) -> AccessUnit:
    return AccessUnit(0, dts, dts, keyframe, data)


def test_sdp() -> None:
    fmt = Vp9Format(TRACK, 97)
    assert (fmt.rtpmap(), fmt.fmtp()) == ("97 VP9/90000", None)


def test_keyframe_descriptor_has_b_e_and_the_resolution() -> None:
    fmt = Vp9Format(TRACK, max_payload_size=100)
    packets = fmt.packetize(au(bytes(200), keyframe=True))
    first, last = packets[0][0], packets[-1][0]
    assert first[:8] == bytes([0x80 | 0x08 | 0x02, 0x80, 0x00, 0x10]) + (320).to_bytes(2, "big") + (
        240
    ).to_bytes(2, "big")
    assert last[0] == 0x80 | 0x04 and packets[-1][1]
    inter = fmt.packetize(au(b"abc", dts=40))
    assert inter == [(bytes([0x80 | 0x40 | 0x08 | 0x04, 0x80, 0x01]) + b"abc", True)]


def test_descriptor_sizes() -> None:
    assert descriptor_size(b"\x0c") == 1
    assert descriptor_size(b"\x8c\x05") == 2
    assert descriptor_size(b"\xfc\x80\x01\x11\x03\x04x") == 6  # flexible mode, two P_DIFFs
    assert descriptor_size(b"\xaf\x01\x00\x00\x18\x00\x10\x00\x10\x01\x04\x01") == 12  # L + SS with G
    assert descriptor_size(b"\x80") is None


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.tuples(st.binary(min_size=1, max_size=4000), st.booleans()), min_size=1, max_size=4),
    st.integers(9, 1500),
)
def test_roundtrip(frames: list[tuple[bytes, bool]], limit: int) -> None:
    fmt = Vp9Format(TRACK, max_payload_size=limit)
    d = fmt.depacketizer()
    out, seq = [], 0
    for i, (frame, key) in enumerate(frames):
        for payload, marker in fmt.packetize(au(frame, key)):
            assert len(payload) <= limit
            out += [u.data for u in d.push(payload, marker, i * 3000, seq)]
            seq += 1
    assert out == [f for f, _ in frames]


def test_lost_packet_loses_the_frame() -> None:
    fmt = Vp9Format(TRACK, max_payload_size=100)
    d = Vp9Depacketizer()
    packets = fmt.packetize(au(bytes(300)))
    assert [u for i, (p, m) in enumerate(packets) if i != 1 for u in d.push(p, m, 0, i)] == []


@settings(max_examples=300)
@given(st.lists(st.tuples(st.binary(max_size=20), st.booleans(), st.integers(0, 3), st.integers(0, 0xFFFF))))
def test_garbage_never_raises(packets: list[tuple[bytes, bool, int, int]]) -> None:
    d = Vp9Depacketizer()
    for payload, marker, ts, seq in packets:
        d.push(payload, marker, ts, seq)
