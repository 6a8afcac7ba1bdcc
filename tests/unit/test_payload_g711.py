"""G.711 PCMU/PCMA (RFC 3551): static types, 20 ms packets with their own timestamps, round trips."""

from __future__ import annotations

from fractions import Fraction

import pytest
from aiortc.rtp import RtpPacket
from hypothesis import given, settings
from hypothesis import strategies as st

from media.access_unit import AccessUnit
from media.track import Track
from streamd.rtp.outgoing import OutgoingStream
from streamd.rtp.payload import DepacketizedUnit, UnsupportedCodec, payload_format_for
from streamd.rtp.payload.g711 import PcmaFormat, PcmuFormat
from streamd.rtp.payload.pcm import PcmDepacketizer


def track(codec: str = "pcm_mulaw", rate: int = 8000, channels: int = 1) -> Track:
    return Track(0, "audio", codec, Fraction(1, rate), sample_rate=rate, channels=channels)


def au(data: bytes, pts: int = 0) -> AccessUnit:
    return AccessUnit(stream_index=0, pts=pts, dts=pts, keyframe=True, data=data)


@pytest.mark.parametrize(
    ("codec", "rate", "channels", "rtpmap"),
    [
        ("pcm_mulaw", 8000, 1, "0 PCMU/8000"),
        ("pcm_alaw", 8000, 1, "8 PCMA/8000"),
        ("pcm_mulaw", 16000, 1, "97 PCMU/16000"),
        ("pcm_alaw", 8000, 2, "97 PCMA/8000/2"),
    ],
)
def test_static_types_at_8000_mono_else_dynamic(codec: str, rate: int, channels: int, rtpmap: str) -> None:
    fmt = payload_format_for(track(codec, rate, channels), 97)
    assert isinstance(fmt, PcmuFormat if codec == "pcm_mulaw" else PcmaFormat)
    assert (fmt.rtpmap(), fmt.fmtp(), fmt.clock_rate, fmt.media) == (rtpmap, None, rate, "audio")


def test_track_without_rate_is_unsupported() -> None:
    with pytest.raises(UnsupportedCodec, match="sampling rate"):
        PcmuFormat(Track(0, "audio", "pcm_mulaw", Fraction(1, 8000), channels=1))


def test_a_wav_packet_becomes_20_ms_packets_with_their_own_timestamps() -> None:
    data = bytes(i % 256 for i in range(512))  # what FFmpeg's WAV demuxer returns: 64 ms
    packets = PcmuFormat(track()).packetize_timed(au(data))
    assert [(len(p), m, off) for p, m, off in packets] == [
        (160, False, 0),
        (160, False, 160),
        (160, False, 320),
        (32, False, 480),
    ]
    assert b"".join(p for p, _, _ in packets) == data
    stereo = PcmaFormat(track("pcm_alaw", 16000, 2)).packetize_timed(au(bytes(1300)))
    assert [(len(p), off) for p, _, off in stereo] == [(640, 0), (640, 320), (20, 640)]


def test_packets_never_exceed_the_payload_limit() -> None:
    fmt = PcmuFormat(track("pcm_mulaw", 48000, 2), max_payload_size=1000)
    assert fmt.frames_per_packet == 500  # 20 ms would be 960 frames, 1920 bytes
    assert [len(p) for p, _ in fmt.packetize(au(bytes(2500)))] == [1000, 1000, 500]


def test_outgoing_stream_stamps_each_packet() -> None:
    s = OutgoingStream(PcmuFormat(track()), Fraction(1, 8000), cname="c@h", ts_offset=2**32 - 200)
    packets = [RtpPacket.parse(p) for p in s.packetize(au(bytes(400), pts=8000))]
    assert [p.timestamp for p in packets] == [7800, 7960, 8120]
    assert {p.payload_type for p in packets} == {0}


def test_depacketizer_keeps_whole_frames_only() -> None:
    d = PcmDepacketizer(frame_bytes=2)
    assert d.push(b"abc", False, 0, 0) == []
    assert d.push(b"", False, 0, 1) == []
    assert d.push(b"abcd", False, 7, 2) == [DepacketizedUnit(7, b"abcd")]
    assert d.push(b"abcd", False, 7, 2) == []
    with pytest.raises(ValueError):
        PcmDepacketizer(0)


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.binary(min_size=1, max_size=3000), min_size=1, max_size=5),
    st.integers(1, 2),
    st.integers(20, 1500),
)
def test_round_trip(aus: list[bytes], channels: int, max_size: int) -> None:
    fmt = PcmaFormat(track("pcm_alaw", 8000, channels), max_payload_size=max_size)
    d = fmt.depacketizer()
    sent, received, seq, pts = b"", b"", 0, 0
    for data in aus:
        for payload, marker, offset in fmt.packetize_timed(au(data)):
            assert len(payload) <= max_size and len(payload) % channels == 0
            for unit in d.push(payload, marker, pts + offset, seq):
                assert unit.timestamp == len(received) // channels  # contiguous samples from 0
                received += unit.data
            seq += 1
        usable = len(data) - len(data) % channels
        sent += data[:usable]
        pts += usable // channels
    assert received == sent


@settings(max_examples=200)
@given(
    st.lists(st.tuples(st.binary(max_size=64), st.booleans(), st.integers(0, 2**32), st.integers(0, 70000))),
    st.integers(1, 8),
)
def test_arbitrary_payloads_never_raise(stream: list[tuple[bytes, bool, int, int]], frame_bytes: int) -> None:
    d = PcmDepacketizer(frame_bytes)
    for payload, marker, timestamp, seq in stream:
        for unit in d.push(payload, marker, timestamp, seq):
            assert unit.data and len(unit.data) % frame_bytes == 0
