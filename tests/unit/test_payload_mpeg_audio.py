"""RFC 2250 MPEG audio (MP1/MP2/MP3): static type 14, fragment offsets, frame sizes, round trips."""

from __future__ import annotations

from fractions import Fraction

import av
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from media.access_unit import AccessUnit
from media.track import Track
from streamd.rtp.payload import DepacketizedUnit, payload_format_for
from streamd.rtp.payload.mpeg_audio import MpegAudioDepacketizer, MpegAudioFormat, parse_frame_header


def track(codec: str = "mp3float") -> Track:
    return Track(0, "audio", codec, Fraction(1, 14112000), sample_rate=44100, channels=2)


def au(data: bytes) -> AccessUnit:
    return AccessUnit(stream_index=0, pts=0, dts=0, keyframe=True, data=data)


def header(version: int = 3, layer: int = 3, bitrate: int = 9, rate: int = 0, padding: int = 0) -> bytes:
    """A frame header: version bits (3 MPEG-1, 2 MPEG-2, 0 MPEG-2.5), layer 1..3, table indices."""
    return bytes(
        [0xFF, 0xE0 | version << 3 | (4 - layer) << 1 | 1, bitrate << 4 | rate << 2 | padding << 1, 0xC4]
    )


def frame(filler: bytes = b"\x55", **fields: int) -> bytes:
    h = header(**fields)
    size = parse_frame_header(h).frame_bytes
    return (h + filler * size)[:size]


@pytest.mark.parametrize("codec", ["mp1", "mp1float", "mp2", "mp2float", "mp3", "mp3float"])
def test_always_static_payload_type_14(codec: str) -> None:
    fmt = payload_format_for(track(codec), 96)
    assert isinstance(fmt, MpegAudioFormat)
    assert (fmt.payload_type, fmt.rtpmap(), fmt.fmtp(), fmt.clock_rate) == (14, "14 MPA/90000", None, 90000)


@pytest.mark.parametrize(
    ("fields", "size", "samples", "rate"),
    [
        ({"bitrate": 5}, 208, 1152, 44100),  # MPEG-1 layer III 64 kbit/s
        ({"bitrate": 5, "padding": 1}, 209, 1152, 44100),
        ({"bitrate": 9}, 417, 1152, 44100),  # 128 kbit/s
        ({"layer": 2, "bitrate": 10, "rate": 1}, 576, 1152, 48000),  # layer II 192 kbit/s
        ({"layer": 1, "bitrate": 12, "rate": 1}, 384, 384, 48000),  # layer I 384 kbit/s
        ({"layer": 1, "bitrate": 1, "rate": 0, "padding": 1}, 36, 384, 44100),  # (8 + 1 slot) * 4
        ({"version": 2, "bitrate": 8}, 208, 576, 22050),  # MPEG-2 layer III 64 kbit/s
        ({"version": 0, "bitrate": 1, "rate": 2}, 72, 576, 8000),  # MPEG-2.5 8 kbit/s
    ],
)
def test_frame_header(fields: dict[str, int], size: int, samples: int, rate: int) -> None:
    parsed = parse_frame_header(header(**fields))
    assert (parsed.frame_bytes, parsed.samples, parsed.sample_rate) == (size, samples, rate)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\xff\xfb\x90",
        header(bitrate=0),
        header(bitrate=15),
        header(rate=3),
        header(version=1),
        b"ID3\x04",
    ],
)
def test_not_a_sized_frame_header(data: bytes) -> None:
    assert parse_frame_header(data) is None


def test_frames_from_real_encoders_are_sized_right() -> None:
    for codec, rate in (("mp2", 48000), ("libmp3lame", 44100), ("libmp3lame", 22050)):
        encoder = av.CodecContext.create(codec, "w")
        encoder.sample_rate, encoder.layout, encoder.format = (
            rate,
            "stereo",
            encoder.codec.audio_formats[0].name,
        )
        encoder.open()
        packets = []
        for i in range(8):
            frame_ = av.AudioFrame(format=encoder.format.name, layout="stereo", samples=1152)
            for plane in frame_.planes:
                plane.update(np.random.default_rng(i).bytes(plane.buffer_size))
            frame_.sample_rate, frame_.pts = rate, i * 1152
            packets += [bytes(p) for p in encoder.encode(frame_)]
        packets += [bytes(p) for p in encoder.encode(None)]
        assert packets
        for p in packets:
            assert parse_frame_header(p).frame_bytes == len(p), codec


def test_small_frame_is_one_packet_with_a_zero_header() -> None:
    data = frame(bitrate=5)
    assert MpegAudioFormat(track()).packetize(au(data)) == [(b"\0\0\0\0" + data, False)]


def test_large_frame_is_fragmented_with_byte_offsets() -> None:
    data = frame(bytes(range(256)), layer=2, bitrate=14, rate=2)  # 384 kbit/s at 32 kHz: 1728 bytes
    packets = MpegAudioFormat(track(), max_payload_size=1000).packetize(au(data))
    assert [(p[:4], len(p)) for p, _ in packets] == [(b"\0\0\0\0", 1000), (b"\0\0\x03\xe4", 4 + 1728 - 996)]
    d = MpegAudioDepacketizer()
    assert d.push(packets[0][0], False, 9, 0) == []
    assert d.push(packets[1][0], False, 9, 1) == [DepacketizedUnit(9, data)]


def test_aggregated_frames_are_split_and_stamped() -> None:
    a, b = frame(bitrate=5), frame(bitrate=5, padding=1)
    out = MpegAudioDepacketizer().push(b"\0\0\0\0" + a + b, True, 2**32 - 10, 0)
    assert out == [DepacketizedUnit(2**32 - 10, a), DepacketizedUnit(1152 * 90000 // 44100 - 10, b)]


def test_unsizable_data_comes_out_as_it_arrived() -> None:
    assert MpegAudioDepacketizer().push(b"\0\0\0\0xyz", False, 1, 0) == [DepacketizedUnit(1, b"xyz")]


def test_lost_or_foreign_fragment_drops_the_frame() -> None:
    data = frame(bitrate=14)  # 1044 bytes
    fmt = MpegAudioFormat(track(), max_payload_size=400)
    packets = [p for p, _ in fmt.packetize(au(data))]
    assert len(packets) == 3
    d = fmt.depacketizer()
    assert [u for i, p in enumerate(packets) if i != 1 for u in d.push(p, False, 0, i)] == []
    d = fmt.depacketizer()
    assert (
        d.push(packets[0], False, 0, 10) + d.push(packets[1], False, 1, 11) + d.push(packets[2], False, 1, 12)
        == []
    )
    assert MpegAudioDepacketizer().push(packets[1], False, 0, 0) == []


def test_oversize_and_empty_aus_are_dropped() -> None:
    assert MpegAudioFormat(track()).packetize(au(b"")) == []
    assert MpegAudioFormat(track()).packetize(au(bytes(65536))) == []


frames = st.lists(
    st.builds(
        frame,
        st.binary(min_size=1, max_size=16),
        version=st.sampled_from([0, 2, 3]),
        layer=st.integers(1, 3),
        bitrate=st.integers(1, 14),
        rate=st.integers(0, 2),
        padding=st.integers(0, 1),
    ),
    min_size=1,
    max_size=6,
)


@settings(max_examples=150, deadline=None)
@given(frames, st.integers(8, 1500))
def test_round_trip(aus: list[bytes], max_size: int) -> None:
    fmt = MpegAudioFormat(track(), max_payload_size=max_size)
    d = fmt.depacketizer()
    seq, received = 0, []
    for n, data in enumerate(aus):
        for payload, marker in fmt.packetize(au(data)):
            assert len(payload) <= max_size
            received += d.push(payload, marker, n * 3000, seq)
            seq += 1
    assert received == [DepacketizedUnit(n * 3000, data) for n, data in enumerate(aus)]


@settings(max_examples=150, deadline=None)
@given(frames, st.integers(8, 1500), st.sets(st.integers(0, 60)))
def test_loss_never_yields_a_damaged_frame(aus: list[bytes], max_size: int, lost: set[int]) -> None:
    fmt = MpegAudioFormat(track(), max_payload_size=max_size)
    d = fmt.depacketizer()
    seq, received = 0, []
    for n, data in enumerate(aus):
        for payload, marker in fmt.packetize(au(data)):
            if seq not in lost:
                received += d.push(payload, marker, n * 3000, seq)
            seq += 1
    assert all(u.data == aus[u.timestamp // 3000] for u in received)


@settings(max_examples=300)
@given(st.lists(st.tuples(st.binary(max_size=64), st.booleans(), st.integers(0, 2**32), st.integers(0, 5))))
def test_arbitrary_payloads_never_raise(stream: list[tuple[bytes, bool, int, int]]) -> None:
    d = MpegAudioDepacketizer()
    for payload, marker, timestamp, seq in stream:
        for unit in d.push(payload, marker, timestamp, seq):
            assert unit.data and 0 <= unit.timestamp < 2**32
