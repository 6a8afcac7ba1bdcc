"""RFC 4184 AC-3: SDP, FT/NF header, fragmentation with the 5/8 rule, frame sizes, round trips."""

from __future__ import annotations

from fractions import Fraction

import av
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from media.access_unit import AccessUnit
from media.track import Track
from streamd.rtp.payload import DepacketizedUnit, UnsupportedCodec, payload_format_for
from streamd.rtp.payload.ac3 import Ac3Depacketizer, Ac3Format, ac3_frame_size


def track(rate: int = 48000, channels: int = 6) -> Track:
    return Track(0, "audio", "ac3", Fraction(1, 90000), sample_rate=rate, channels=channels)


def au(data: bytes) -> AccessUnit:
    return AccessUnit(stream_index=0, pts=0, dts=0, keyframe=True, data=data)


def syncinfo(fscod: int, frmsizecod: int) -> bytes:
    return b"\x0b\x77\x00\x00" + bytes([fscod << 6 | frmsizecod])


def frame(fscod: int = 0, frmsizecod: int = 20, filler: bytes = b"\xaa") -> bytes:
    size = ac3_frame_size(syncinfo(fscod, frmsizecod))
    return (syncinfo(fscod, frmsizecod) + filler * size)[:size]


def test_sdp() -> None:
    fmt = payload_format_for(track(44100, 2), 97)
    assert isinstance(fmt, Ac3Format)
    assert (fmt.rtpmap(), fmt.fmtp(), fmt.clock_rate) == ("97 AC3/44100/2", None, 44100)


def test_rates_outside_ac3_are_unsupported() -> None:
    with pytest.raises(UnsupportedCodec, match="22050 Hz"):
        Ac3Format(track(22050))


@pytest.mark.parametrize(
    ("fscod", "frmsizecod", "size"),
    [(0, 0, 128), (0, 20, 768), (0, 37, 2560), (1, 20, 834), (1, 21, 836), (2, 37, 3840), (1, 0, 138)],
)
def test_frame_sizes(fscod: int, frmsizecod: int, size: int) -> None:
    assert ac3_frame_size(syncinfo(fscod, frmsizecod)) == size


@pytest.mark.parametrize(
    "data", [b"", b"\x0b\x77\x00\x00", syncinfo(3, 0), syncinfo(0, 38), b"\x0b\x78\x00\x00\x00"]
)
def test_not_a_sized_frame(data: bytes) -> None:
    assert ac3_frame_size(data) is None


def test_whole_frame_packet() -> None:
    data = frame()
    assert Ac3Format(track()).packetize(au(data)) == [(b"\x00\x01" + data, True)]


def test_fragments_follow_the_five_eighths_rule() -> None:
    data = frame(frmsizecod=37)  # 2560 bytes
    most = Ac3Format(track(), max_payload_size=1602).packetize(au(data))  # 1600 >= 5/8 of 2560
    assert [(p[:2], len(p), m) for p, m in most] == [(b"\x01\x02", 1602, False), (b"\x03\x02", 962, True)]
    less = Ac3Format(track(), max_payload_size=1400).packetize(au(data))
    assert [(p[:2], m) for p, m in less] == [(b"\x02\x02", False), (b"\x03\x02", True)]
    assert Ac3Format(track(), max_payload_size=18).packetize(au(bytes(4081))) == []  # 256 fragments
    assert len(Ac3Format(track(), max_payload_size=18).packetize(au(bytes(4080)))) == 255


def test_several_frames_in_one_packet_are_split_and_stamped() -> None:
    a, b = frame(frmsizecod=0), frame(frmsizecod=2)
    assert Ac3Depacketizer().push(b"\x00\x02" + a + b, True, 2**32 - 1, 0) == [
        DepacketizedUnit(2**32 - 1, a),
        DepacketizedUnit(1535, b),
    ]


def test_fragment_with_another_timestamp_or_after_loss_is_dropped() -> None:
    packets = [p for p, _ in Ac3Format(track(), max_payload_size=1000).packetize(au(frame(frmsizecod=37)))]
    d = Ac3Depacketizer()
    assert (
        d.push(packets[0], False, 0, 0) + d.push(packets[1], False, 0, 2) + d.push(packets[2], True, 0, 3)
        == []
    )
    assert (
        d.push(packets[0], False, 0, 4) + d.push(packets[1], False, 9, 5) + d.push(packets[2], True, 9, 6)
        == []
    )
    assert d.push(b"\x04\x01abc", True, 0, 7) == []  # MBZ bits set


frames = st.lists(
    st.builds(frame, st.integers(0, 2), st.integers(0, 37), st.binary(min_size=1, max_size=8)),
    min_size=1,
    max_size=5,
)


@settings(max_examples=150, deadline=None)
@given(frames, st.integers(18, 1500))
def test_round_trip(aus: list[bytes], max_size: int) -> None:
    fmt = Ac3Format(track(), max_payload_size=max_size)
    d = fmt.depacketizer()
    seq, received = 0, []
    for n, data in enumerate(aus):
        packets = fmt.packetize(au(data))
        assert all(len(p) <= max_size for p, _ in packets)
        assert [m for _, m in packets] == [i == len(packets) - 1 for i in range(len(packets))]
        for payload, marker in packets:
            received += d.push(payload, marker, n * 1536, seq)
            seq += 1
    assert received == [DepacketizedUnit(n * 1536, data) for n, data in enumerate(aus)]


@settings(max_examples=150, deadline=None)
@given(frames, st.integers(18, 1500), st.sets(st.integers(0, 100)))
def test_loss_never_yields_a_damaged_frame(aus: list[bytes], max_size: int, lost: set[int]) -> None:
    fmt = Ac3Format(track(), max_payload_size=max_size)
    d = fmt.depacketizer()
    seq, received = 0, []
    for n, data in enumerate(aus):
        for payload, marker in fmt.packetize(au(data)):
            if seq not in lost:
                received += d.push(payload, marker, n * 1536, seq)
            seq += 1
    assert all(u.data == aus[u.timestamp // 1536] for u in received)


@settings(max_examples=300)
@given(st.lists(st.tuples(st.binary(max_size=48), st.booleans(), st.integers(0, 2**32), st.integers(0, 5))))
def test_arbitrary_payloads_never_raise(stream: list[tuple[bytes, bool, int, int]]) -> None:
    d = Ac3Depacketizer()
    for payload, marker, timestamp, seq in stream:
        for unit in d.push(payload, marker, timestamp, seq):
            assert unit.data and 0 <= unit.timestamp < 2**32


def test_real_encoder_frames_survive_fragmentation_and_decode() -> None:
    encoder = av.CodecContext.create("ac3", "w")
    encoder.sample_rate, encoder.layout, encoder.format, encoder.bit_rate = 48000, "5.1", "fltp", 640000
    encoder.open()
    packets = []
    for i in range(6):
        samples = np.random.default_rng(i).uniform(-0.5, 0.5, (6, 1536)).astype(np.float32)
        frame_ = av.AudioFrame.from_ndarray(samples, format="fltp", layout="5.1")
        frame_.sample_rate, frame_.pts = 48000, i * 1536
        packets += [bytes(p) for p in encoder.encode(frame_)]
    packets += [bytes(p) for p in encoder.encode(None)]
    assert all(ac3_frame_size(p) == len(p) == 2560 for p in packets)
    fmt = Ac3Format(track(), max_payload_size=1000)
    d = fmt.depacketizer()
    decoder = av.CodecContext.create("ac3", "r")
    seq, decoded = 0, 0
    for n, data in enumerate(packets):
        for payload, marker in fmt.packetize(au(data)):
            for unit in d.push(payload, marker, n * 1536, seq):
                assert unit.data == data
                decoded += sum(f.samples for f in decoder.decode(av.Packet(unit.data)))
            seq += 1
    assert decoded == 1536 * len(packets)
