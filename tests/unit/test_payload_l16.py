"""L16 (RFC 3551) and L24 (RFC 3190): byte order, static types, frame-aligned packets, round trips."""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from media.access_unit import AccessUnit
from media.track import Track
from streamd.rtp.payload import UnsupportedCodec, payload_format_for
from streamd.rtp.payload.l16 import L16Format, L24Format
from streamd.rtp.payload.pcm import swap_bytes


def track(codec: str = "pcm_s16le", rate: int = 44100, channels: int = 2) -> Track:
    return Track(0, "audio", codec, Fraction(1, rate), sample_rate=rate, channels=channels)


def au(data: bytes) -> AccessUnit:
    return AccessUnit(stream_index=0, pts=0, dts=0, keyframe=True, data=data)


@pytest.mark.parametrize(
    ("codec", "rate", "channels", "cls", "rtpmap"),
    [
        ("pcm_s16le", 44100, 2, L16Format, "10 L16/44100/2"),
        ("pcm_s16be", 44100, 1, L16Format, "11 L16/44100/1"),
        ("pcm_s16le", 22050, 1, L16Format, "98 L16/22050/1"),
        ("pcm_s16le", 48000, 6, L16Format, "98 L16/48000/6"),
        ("pcm_s24le", 44100, 2, L24Format, "98 L24/44100/2"),
        ("pcm_s24be", 96000, 1, L24Format, "98 L24/96000/1"),
    ],
)
def test_rtpmap(codec: str, rate: int, channels: int, cls: type, rtpmap: str) -> None:
    fmt = payload_format_for(track(codec, rate, channels), 98)
    assert isinstance(fmt, cls)
    assert (fmt.rtpmap(), fmt.fmtp(), fmt.clock_rate) == (rtpmap, None, rate)


def test_little_endian_input_goes_out_big_endian() -> None:
    assert L16Format(track()).packetize(au(b"\x01\x02\x03\x04")) == [(b"\x02\x01\x04\x03", False)]
    assert L16Format(track("pcm_s16be")).packetize(au(b"\x01\x02\x03\x04")) == [(b"\x01\x02\x03\x04", False)]
    six = bytes(range(6))
    assert L24Format(track("pcm_s24le", channels=1)).packetize(au(six)) == [
        (b"\x02\x01\x00\x05\x04\x03", False)
    ]


def test_packets_fill_the_limit_on_frame_boundaries() -> None:
    fmt = L24Format(track("pcm_s24le", 48000, 2), max_payload_size=1400)
    assert fmt.frames_per_packet == 233  # 6-byte frames: 1398 bytes
    packets = fmt.packetize_timed(au(bytes(4092)))
    assert [(len(p), off) for p, _, off in packets] == [(1398, 0), (1398, 233), (1296, 466)]


def test_truncated_trailing_frame_is_not_sent() -> None:
    assert L16Format(track()).packetize(au(bytes(7))) == [(bytes(4), False)]
    assert L16Format(track()).packetize(au(bytes(3))) == []


def test_a_frame_bigger_than_a_packet_is_unsupported() -> None:
    with pytest.raises(UnsupportedCodec, match="sample frame"):
        L24Format(track("pcm_s24le", 48000, 8), max_payload_size=20)


def test_swap_bytes() -> None:
    assert swap_bytes(b"abcdef", 3) == b"cbafed"
    assert swap_bytes(b"abcd", 2) == b"badc"
    assert swap_bytes(b"ab", 1) == b"ab"


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.binary(min_size=1, max_size=5000), min_size=1, max_size=4),
    st.sampled_from(["pcm_s16le", "pcm_s16be", "pcm_s24le", "pcm_s24be"]),
    st.integers(1, 6),
    st.integers(40, 1500),
)
def test_round_trip(aus: list[bytes], codec: str, channels: int, max_size: int) -> None:
    fmt = payload_format_for(track(codec, 32000, channels), 96, max_size)
    frame = fmt.frame_bytes
    d = fmt.depacketizer()
    sent, received, seq = b"", b"", 0
    for data in aus:
        start = len(sent) // frame
        for payload, marker, offset in fmt.packetize_timed(au(data)):
            assert len(payload) <= max_size and len(payload) % frame == 0
            for unit in d.push(payload, marker, start + offset, seq):
                assert unit.timestamp == len(received) // frame  # contiguous samples from 0
                received += unit.data
            seq += 1
        sent += data[: len(data) - len(data) % frame]
    width = 2 if "16" in codec else 3
    assert received == (swap_bytes(sent, width) if codec.endswith("le") else sent)
