"""RFC 7587 Opus: SDP attributes, one packet per AU, multistream refusal, round trips, garbage."""

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
from streamd.rtp.payload.opus import OpusDepacketizer, OpusFormat, opus_head_layout


def opus_head(channels: int, family: int = 0, streams: int = 1) -> bytes:
    head = b"OpusHead" + bytes([1, channels]) + (312).to_bytes(2, "little") + (48000).to_bytes(4, "little")
    head += bytes(2) + bytes([family])
    if family:
        head += bytes([streams, channels - streams]) + bytes(range(channels))
    return head


def track(channels: int = 2, extradata: bytes | None = None, sample_rate: int = 48000) -> Track:
    return Track(
        index=0,
        kind="audio",
        codec="opus",
        time_base=Fraction(1, 1000),
        sample_rate=sample_rate,
        channels=channels,
        extradata=opus_head(channels) if extradata is None else extradata,
    )


def au(data: bytes) -> AccessUnit:
    return AccessUnit(stream_index=0, pts=0, dts=0, keyframe=True, data=data)


@pytest.mark.parametrize(("channels", "fmtp"), [(2, "97 sprop-stereo=1"), (1, "97 sprop-stereo=0")])
def test_sdp_is_always_opus_48000_2(channels: int, fmtp: str) -> None:
    fmt = payload_format_for(track(channels, sample_rate=16000), 97)
    assert isinstance(fmt, OpusFormat)
    assert (fmt.rtpmap(), fmt.fmtp(), fmt.clock_rate, fmt.media) == ("97 opus/48000/2", fmtp, 48000, "audio")


def test_channels_come_from_the_opus_head_before_the_track() -> None:
    assert OpusFormat(track(channels=2, extradata=opus_head(1))).fmtp() == "96 sprop-stereo=0"
    assert OpusFormat(track(channels=1, extradata=b"")).fmtp() == "96 sprop-stereo=0"


@pytest.mark.parametrize(
    "extradata", [opus_head(6, family=1, streams=4), opus_head(2, family=255, streams=2), b""]
)
def test_multistream_is_refused_with_a_reason(extradata: bytes) -> None:
    with pytest.raises(UnsupportedCodec, match=r"multistream.*RFC 7587"):
        OpusFormat(track(channels=6 if not extradata else extradata[9], extradata=extradata))


def test_single_stream_with_a_mapping_family_is_fine() -> None:
    assert opus_head_layout(opus_head(2, family=1, streams=1)) == (2, 1)
    assert OpusFormat(track(extradata=opus_head(2, family=1, streams=1))).channels == 2
    assert opus_head_layout(b"OpusHead") == (0, 0)


def test_one_packet_per_au_headers_and_oversize_never_sent() -> None:
    fmt = OpusFormat(track(), max_payload_size=500)
    assert fmt.packetize(au(b"\xfc\x01\x02")) == [(b"\xfc\x01\x02", False)]
    assert fmt.packetize(au(opus_head(2))) == []
    assert fmt.packetize(au(b"OpusTags\x00\x00")) == []
    assert fmt.packetize(au(b"")) == []
    assert fmt.packetize(au(bytes(501))) == []
    assert fmt.packetize_timed(au(b"\x01")) == [(b"\x01", False, 0)]


def test_depacketizer_drops_empty_and_duplicates() -> None:
    d = OpusDepacketizer()
    assert d.push(b"", False, 0, 1) == []
    assert d.push(b"\x08", False, 2**32 + 5, 2) == [DepacketizedUnit(5, b"\x08")]
    assert d.push(b"\x08", False, 5, 2) == []


@settings(max_examples=100, deadline=None)
@given(st.lists(st.binary(min_size=1, max_size=1400), min_size=1, max_size=10))
def test_round_trip(packets: list[bytes]) -> None:
    fmt = OpusFormat(track())
    d = fmt.depacketizer()
    out = []
    for n, data in enumerate(packets):
        for payload, marker in fmt.packetize(au(data)):
            out += d.push(payload, marker, n * 960, n)
    expected = [(n * 960, p) for n, p in enumerate(packets) if not p.startswith((b"OpusHead", b"OpusTags"))]
    assert [(u.timestamp, u.data) for u in out] == expected


@settings(max_examples=200)
@given(
    st.lists(st.tuples(st.binary(max_size=64), st.booleans(), st.integers(0, 2**32), st.integers(0, 70000)))
)
def test_arbitrary_payloads_never_raise(stream: list[tuple[bytes, bool, int, int]]) -> None:
    d = OpusDepacketizer()
    for payload, marker, timestamp, seq in stream:
        for unit in d.push(payload, marker, timestamp, seq):
            assert unit.data and 0 <= unit.timestamp < 2**32


def test_real_encoder_stream_decodes_after_round_trip() -> None:
    encoder = av.CodecContext.create("libopus", "w")
    encoder.sample_rate, encoder.layout, encoder.format = 48000, "stereo", "s16"
    encoder.open()
    packets = []
    for i in range(10):
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1920), np.int16), format="s16", layout="stereo")
        frame.sample_rate, frame.pts = 48000, i * 960
        packets += [bytes(p) for p in encoder.encode(frame)]
    packets += [bytes(p) for p in encoder.encode(None)]
    fmt = OpusFormat(track(extradata=bytes(encoder.extradata)))
    d = fmt.depacketizer()
    decoder = av.CodecContext.create("opus", "r")
    samples = 0
    for n, data in enumerate(packets):
        for payload, marker in fmt.packetize(au(data)):
            for unit in d.push(payload, marker, n * 960, n):
                samples += sum(f.samples for f in decoder.decode(av.Packet(unit.data)))
    assert samples == 960 * len(packets)
