"""RFC 3640 AAC (mpeg4-generic, AAC-hbr): hand-checked packets, round trips, loss and garbage."""

from __future__ import annotations

from fractions import Fraction

import av
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from media.access_unit import AccessUnit
from media.track import AacConfig, Track
from streamd.rtp.payload import DepacketizedUnit, UnsupportedCodec
from streamd.rtp.payload.aac import AacDepacketizer, AacFormat

ASC_LC_44100_STEREO = bytes.fromhex("1210")


def track(config: AacConfig | None = None, sample_rate: int = 44100, channels: int = 2) -> Track:
    if config is None:
        config = AacConfig(ASC_LC_44100_STEREO, object_type=2, sample_rate=44100, channels=2)
    return Track(
        index=1,
        kind="audio",
        codec="aac",
        time_base=Fraction(1, sample_rate or 1),
        sample_rate=sample_rate,
        channels=channels,
        config=config,
    )


def au(data: bytes) -> AccessUnit:
    return AccessUnit(stream_index=1, pts=0, dts=0, keyframe=True, data=data)


# --- SDP attributes -------------------------------------------------------------------------------


def test_rtpmap_and_fmtp() -> None:
    fmt = AacFormat(track(), payload_type=97)
    assert (fmt.media, fmt.clock_rate, fmt.encoding_params) == ("audio", 44100, "2")
    assert fmt.rtpmap() == "97 mpeg4-generic/44100/2"
    assert fmt.fmtp() == (
        "97 streamtype=5;profile-level-id=1;mode=AAC-hbr;sizelength=13;indexlength=3;"
        "indexdeltalength=3;config=1210"
    )


def test_explicit_sbr_clocks_at_the_extension_rate() -> None:
    config = AacConfig(
        bytes.fromhex("2b8a0800"), object_type=5, sample_rate=22050, channels=1, extension_sample_rate=44100
    )
    fmt = AacFormat(track(config, sample_rate=44100, channels=1))
    assert fmt.rtpmap() == "97 mpeg4-generic/44100/1"
    assert fmt.samples_per_frame == 2048  # 1024 core samples at twice the core rate
    assert fmt.depacketizer().push(b"\x00\x20\x00\x08\x00\x08\x01\x02", True, 0, 0)[1].timestamp == 2048


def test_channel_layout_from_a_pce_falls_back_to_the_track() -> None:
    config = AacConfig(ASC_LC_44100_STEREO, object_type=2, sample_rate=48000, channels=0)
    assert AacFormat(track(config, channels=6)).rtpmap() == "97 mpeg4-generic/48000/6"
    assert AacFormat(track(config, channels=0)).rtpmap() == "97 mpeg4-generic/48000"


@pytest.mark.parametrize(
    "bad",
    [
        Track(1, "audio", "aac", Fraction(1, 44100)),
        track(AacConfig(b"", object_type=2, sample_rate=44100, channels=2)),
    ],
)
def test_track_without_audio_specific_config_is_unsupported(bad: Track) -> None:
    with pytest.raises(UnsupportedCodec, match="AudioSpecificConfig"):
        AacFormat(bad)


def test_track_without_sample_rate_is_unsupported() -> None:
    config = AacConfig(ASC_LC_44100_STEREO, object_type=2, sample_rate=0, channels=2)
    with pytest.raises(UnsupportedCodec, match="sampling rate"):
        AacFormat(track(config, sample_rate=0))


# --- packetizer -------------------------------------------------------------------------------------


def test_one_au_per_packet() -> None:
    data = bytes(range(200))
    assert AacFormat(track()).packetize(au(data)) == [(b"\x00\x10\x06\x40" + data, True)]


def test_large_au_is_fragmented_with_the_full_size_in_every_header() -> None:
    data = bytes(i % 251 for i in range(3000))
    packets = AacFormat(track(), max_payload_size=1400).packetize(au(data))
    assert [len(p) for p, _ in packets] == [1400, 1400, 4 + 3000 - 2 * 1396]
    assert [m for _, m in packets] == [False, False, True]
    assert all(p[:4] == b"\x00\x10\x5d\xc0" for p, _ in packets)  # 3000 << 3 = 0x5dc0
    assert b"".join(p[4:] for p, _ in packets) == data


def test_au_that_exactly_fits_is_not_fragmented() -> None:
    packets = AacFormat(track(), max_payload_size=104).packetize(au(bytes(100)))
    assert [(len(p), m) for p, m in packets] == [(104, True)]


def test_unsignalable_and_empty_aus_are_dropped() -> None:
    assert AacFormat(track()).packetize(au(bytes(8192))) == []
    assert AacFormat(track()).packetize(au(b"")) == []
    assert len(AacFormat(track()).packetize(au(bytes(8191)))) == 6


# --- depacketizer ----------------------------------------------------------------------------------


def test_several_aus_in_one_packet() -> None:
    # AU-headers-length 32 bits; sizes 3 (index 0) and 5 (index delta 0)
    payload = b"\x00\x20" + (3 << 3).to_bytes(2, "big") + (5 << 3).to_bytes(2, "big") + b"abc" + b"defgh"
    assert AacDepacketizer().push(payload, True, 0xFFFFFF00, 7) == [
        DepacketizedUnit(0xFFFFFF00, b"abc"),
        DepacketizedUnit((0xFFFFFF00 + 1024) & 0xFFFFFFFF, b"defgh"),
    ]


def test_other_header_widths() -> None:
    # sizelength=6, indexlength=2, indexdeltalength=2: two 8-bit headers
    payload = b"\x00\x10" + bytes([2 << 2, 1 << 2]) + b"xyz"
    d = AacDepacketizer(size_length=6, index_length=2, index_delta_length=2, samples_per_frame=960)
    assert d.push(payload, True, 0, 0) == [DepacketizedUnit(0, b"xy"), DepacketizedUnit(960, b"z")]


def test_header_section_not_byte_aligned() -> None:
    # sizelength=13, indexlength=0: one 13-bit header padded to two bytes
    payload = b"\x00\x0d" + (4 << 3).to_bytes(2, "big") + b"abcd"
    assert AacDepacketizer(index_length=0).push(payload, True, 5, 0) == [DepacketizedUnit(5, b"abcd")]


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"\x00",
        b"\x00\x00abc",  # no headers
        b"\x00\x10\x00",  # header section cut short
        b"\x00\x14\x00\x00\x00",  # 20 bits: not a whole number of headers
        b"\x00\x20\x00\x18\x00\x28abc",  # sizes 3 + 5 but only 3 bytes of data
    ],
)
def test_malformed_payloads_yield_nothing(payload: bytes) -> None:
    assert AacDepacketizer().push(payload, True, 0, 0) == []


def test_lost_fragment_drops_the_au_but_not_the_next() -> None:
    fmt = AacFormat(track(), max_payload_size=500)
    big, small = bytes(1200), b"\x01" * 50
    first = fmt.packetize(au(big))
    d = fmt.depacketizer()
    out = [u for i, (p, m) in enumerate(first) if i != 1 for u in d.push(p, m, 0, i)]
    [(p, m)] = fmt.packetize(au(small))
    out += d.push(p, m, 1024, len(first))
    assert out == [DepacketizedUnit(1024, small)]


def test_collection_started_mid_au_is_discarded() -> None:
    fmt = AacFormat(track(), max_payload_size=500)
    packets = fmt.packetize(au(bytes(1200)))
    d = fmt.depacketizer()
    assert [u for i, (p, m) in enumerate(packets[1:]) for u in d.push(p, m, 0, 100 + i)] == []
    again = [u for i, (p, m) in enumerate(packets) for u in d.push(p, m, 1024, 100 + len(packets) + i)]
    assert again == [DepacketizedUnit(1024, bytes(1200))]


def test_duplicate_packet_is_ignored() -> None:
    [(p, m)] = AacFormat(track()).packetize(au(b"abc"))
    d = AacDepacketizer()
    assert d.push(p, m, 0, 1) == [DepacketizedUnit(0, b"abc")]
    assert d.push(p, m, 0, 1) == []


def test_invalid_header_widths() -> None:
    with pytest.raises(ValueError):
        AacDepacketizer(size_length=0)


# --- properties ------------------------------------------------------------------------------------

au_payloads = st.lists(
    st.tuples(st.integers(1, 8191), st.binary(min_size=1, max_size=8)).map(lambda t: (t[1] * t[0])[: t[0]]),
    min_size=1,
    max_size=8,
)


@settings(max_examples=150, deadline=None)
@given(au_payloads, st.integers(100, 1500))
def test_round_trip(aus: list[bytes], max_size: int) -> None:
    fmt = AacFormat(track(), max_payload_size=max_size)
    d = fmt.depacketizer()
    seq, received = 0, []
    for n, data in enumerate(aus):
        packets = fmt.packetize(au(data))
        assert all(len(p) <= max_size for p, _ in packets)
        assert [m for _, m in packets] == [i == len(packets) - 1 for i in range(len(packets))]
        for payload, marker in packets:
            received += d.push(payload, marker, n * 1024, seq)
            seq += 1
    assert received == [DepacketizedUnit(n * 1024, data) for n, data in enumerate(aus)]


@settings(max_examples=150, deadline=None)
@given(au_payloads, st.integers(100, 1500), st.sets(st.integers(0, 100)))
def test_loss_never_yields_a_damaged_au(aus: list[bytes], max_size: int, lost: set[int]) -> None:
    fmt = AacFormat(track(), max_payload_size=max_size)
    d = fmt.depacketizer()
    seq, received = 0, []
    for n, data in enumerate(aus):
        for payload, marker in fmt.packetize(au(data)):
            if seq not in lost:
                received += d.push(payload, marker, n * 1024, seq)
            seq += 1
    assert all(u == DepacketizedUnit(u.timestamp, aus[u.timestamp // 1024]) for u in received)


@settings(max_examples=300)
@given(
    st.lists(
        st.tuples(st.binary(max_size=48), st.booleans(), st.integers(0, 3), st.integers(0, 5)), max_size=30
    ),
    st.integers(1, 32),
    st.integers(0, 8),
    st.integers(0, 8),
)
def test_arbitrary_payloads_never_raise(
    stream: list[tuple[bytes, bool, int, int]], size_length: int, index_length: int, delta_length: int
) -> None:
    d = AacDepacketizer(size_length, index_length, delta_length)
    for payload, marker, timestamp, seq in stream:
        for unit in d.push(payload, marker, timestamp, seq):
            assert unit.data


# --- a real encoder's stream ----------------------------------------------------------------------


def test_real_stream_decodes_after_round_trip() -> None:
    encoder = av.CodecContext.create("aac", "w")
    encoder.sample_rate, encoder.layout, encoder.format = 44100, "stereo", "fltp"
    encoder.open()
    aus = []
    for i in range(10):
        frame = av.AudioFrame.from_ndarray(np.zeros((2, 1024), np.float32), format="fltp", layout="stereo")
        frame.sample_rate, frame.pts = 44100, i * 1024
        aus += [bytes(p) for p in encoder.encode(frame)]
    aus += [bytes(p) for p in encoder.encode(None)]
    asc = bytes(encoder.extradata)
    fmt = AacFormat(track(AacConfig(asc, object_type=2, sample_rate=44100, channels=2)), max_payload_size=100)
    assert fmt.fmtp().endswith(f"config={asc.hex()}")
    d = fmt.depacketizer()
    decoder = av.CodecContext.create("aac", "r")
    decoder.extradata = asc
    seq, samples = 0, 0
    for n, data in enumerate(aus):
        for payload, marker in fmt.packetize(au(data)):
            for unit in d.push(payload, marker, n * 1024, seq):
                samples += sum(f.samples for f in decoder.decode(av.Packet(unit.data)))
            seq += 1
    samples += sum(f.samples for f in decoder.decode(None))
    assert samples == 1024 * len(aus)
