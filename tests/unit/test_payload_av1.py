"""AV1 RTP payload format: aggregation headers, OBU size fields, round trips, garbage input."""

from __future__ import annotations

from fractions import Fraction

from hypothesis import given, settings
from hypothesis import strategies as st

from media.access_unit import AccessUnit
from media.track import Track
from streamd.rtp.payload.av1 import (
    Av1Depacketizer,
    Av1Format,
    leb128,
    read_leb128,
    split_obus,
    with_size_field,
)

SEQ = with_size_field(bytes([1 << 3]) + b"\x00\x00\x00\x0a\x0b")  # sequence header OBU
TD = bytes([2 << 3 | 2, 0])  # temporal delimiter with an empty size field
TRACK = Track(0, "video", "av1", Fraction(1, 1000), extradata=b"\x81\x00\x0c\x00" + SEQ)


def obu(kind: int, body: bytes, extension: bool = False) -> bytes:
    header = bytes([kind << 3 | (4 if extension else 0)]) + (b"\x10" if extension else b"")
    return with_size_field(header + body)


def au(data: bytes, keyframe: bool = False) -> AccessUnit:
    return AccessUnit(0, 0, 0, keyframe, data)


def test_sdp() -> None:
    fmt = Av1Format(TRACK, 96)
    assert (fmt.rtpmap(), fmt.fmtp()) == ("96 AV1/90000", None)


def test_leb128() -> None:
    assert leb128(0) == b"\x00" and leb128(127) == b"\x7f" and leb128(128) == b"\x80\x01"
    assert read_leb128(b"\x80\x01", 0) == (128, 2)
    assert read_leb128(b"\x80", 0) is None and read_leb128(b"\xff" * 9, 0) is None


def test_size_fields_stripped_and_temporal_delimiter_dropped() -> None:
    frame = obu(6, b"\x01\x02\x03")
    [(payload, marker)] = Av1Format(TRACK).packetize(au(TD + frame))
    assert marker and payload == b"\x00\x04" + bytes([6 << 3]) + b"\x01\x02\x03"
    assert Av1Depacketizer().push(payload, True, 0, 0)[0].data == frame


def test_keyframe_gets_the_sequence_header_first_and_n() -> None:
    frame = obu(6, b"\x01\x02\x03")
    [(payload, _)] = Av1Format(TRACK).packetize(au(TD + frame, keyframe=True))
    assert payload[0] == 0x08  # N
    assert Av1Depacketizer().push(payload, True, 0, 0)[0].data == SEQ + frame


def test_fragmented_obu_sets_y_then_z() -> None:
    big = obu(6, bytes(range(200)) * 3, extension=True)
    packets = Av1Format(TRACK, max_payload_size=100).packetize(au(big))
    assert [p[0] & 0xC0 for p, _ in packets] == [0x40] + [0xC0] * (len(packets) - 2) + [0x80]
    d = Av1Depacketizer()
    out = [u for i, (p, m) in enumerate(packets) for u in d.push(p, m, 0, i)]
    assert [u.data for u in out] == [big]


def test_receiver_removes_a_size_field_the_sender_left_in() -> None:
    with_size = obu(6, b"\xaa\xbb")
    payload = b"\x10" + with_size  # W=1: one element, no length
    assert Av1Depacketizer().push(payload, True, 0, 0)[0].data == with_size


obus = st.builds(
    obu, st.sampled_from([1, 3, 4, 5, 6, 15]), st.binary(min_size=0, max_size=2500), st.booleans()
)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.lists(obus, min_size=1, max_size=5), min_size=1, max_size=3), st.integers(4, 1500))
def test_roundtrip(units: list[list[bytes]], limit: int) -> None:
    fmt = Av1Format(TRACK, max_payload_size=limit)
    d = fmt.depacketizer()
    out, seq = [], 0
    for i, tu in enumerate(units):
        for payload, marker in fmt.packetize(au(TD + b"".join(tu))):
            assert len(payload) <= limit
            out += [u.data for u in d.push(payload, marker, i * 3000, seq)]
            seq += 1
    assert out == [b"".join(tu) for tu in units]
    assert all(split_obus(o) for o in out)


@settings(max_examples=300)
@given(st.lists(st.tuples(st.binary(max_size=30), st.booleans(), st.integers(0, 3), st.integers(0, 0xFFFF))))
def test_garbage_never_raises(packets: list[tuple[bytes, bool, int, int]]) -> None:
    d = Av1Depacketizer()
    for payload, marker, ts, seq in packets:
        d.push(payload, marker, ts, seq)
