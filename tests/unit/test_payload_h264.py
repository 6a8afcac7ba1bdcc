"""RFC 6184 H.264 payload format: hand-checked packets, round trips, loss and garbage input."""

from __future__ import annotations

import base64
from fractions import Fraction

import av
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from media.access_unit import AccessUnit
from media.track import H264Config, Track
from streamd.rtp.payload import DepacketizedUnit, UnsupportedCodec
from streamd.rtp.payload.h264 import H264Depacketizer, H264Format, split_annex_b

SPS = bytes.fromhex("6742c01eda0280bfe5c044000003000400000300c83c58ba80")
PPS = bytes.fromhex("68ce3c80")
SEI = bytes.fromhex("0605ff") + bytes(20) + b"\x80"
AUD = bytes.fromhex("0910")
FILLER = bytes.fromhex("0cffffff80")


def track(sps: tuple[bytes, ...] = (SPS,), pps: tuple[bytes, ...] = (PPS,)) -> Track:
    config = H264Config(sps=sps, pps=pps, nal_length_size=4)
    return Track(index=0, kind="video", codec="h264", time_base=Fraction(1, 90000), config=config)


def au(*nals: bytes, keyframe: bool = False) -> AccessUnit:
    data = b"".join(b"\x00\x00\x00\x01" + n for n in nals)
    return AccessUnit(stream_index=0, pts=0, dts=0, keyframe=keyframe, data=data, nal_units=nals)


def nal(header: int, size: int, fill: int = 0xAB) -> bytes:
    return bytes([header]) + bytes([fill]) * (size - 1)


def depacketize(
    packets: list[tuple[bytes, bool]], timestamp: int = 0, seq: int = 0
) -> list[DepacketizedUnit]:
    d = H264Depacketizer()
    return [u for i, (p, m) in enumerate(packets) for u in d.push(p, m, timestamp, seq + i)]


# --- SDP attributes -------------------------------------------------------------------------------


def test_rtpmap_and_fmtp() -> None:
    fmt = H264Format(track(), payload_type=96)
    assert (fmt.media, fmt.clock_rate, fmt.encoding_name) == ("video", 90000, "H264")
    assert fmt.rtpmap() == "96 H264/90000"
    sprop = f"{base64.b64encode(SPS).decode()},{base64.b64encode(PPS).decode()}"
    assert fmt.fmtp() == f"96 packetization-mode=1;profile-level-id=42c01e;sprop-parameter-sets={sprop}"


def test_fmtp_lists_every_parameter_set() -> None:
    sps2, pps2 = SPS[:-1] + b"\x81", PPS + b"\x01"
    fmtp = H264Format(track((SPS, sps2), (PPS, pps2)), payload_type=100).fmtp()
    sprop = fmtp.split("sprop-parameter-sets=")[1]
    assert [base64.b64decode(p) for p in sprop.split(",")] == [SPS, sps2, PPS, pps2]


@pytest.mark.parametrize(
    "bad",
    [
        Track(0, "video", "h264", Fraction(1, 90000)),
        track(sps=()),
        track(pps=()),
        track(sps=(b"\x67\x42",)),
    ],
)
def test_track_without_usable_parameter_sets_is_unsupported(bad: Track) -> None:
    with pytest.raises(UnsupportedCodec) as err:
        H264Format(bad)
    assert "SPS" in err.value.reason


@pytest.mark.parametrize(("pt", "size"), [(-1, 1400), (128, 1400), (96, 2)])
def test_invalid_constructor_arguments(pt: int, size: int) -> None:
    with pytest.raises(ValueError):
        H264Format(track(), payload_type=pt, max_payload_size=size)


# --- packetizer: hand-checked vectors -------------------------------------------------------------


def test_small_nal_is_a_single_nal_unit_packet_with_marker() -> None:
    slice_ = nal(0x41, 500)
    assert H264Format(track()).packetize(au(slice_)) == [(slice_, True)]


def test_parameter_sets_aggregate_into_one_stap_a() -> None:
    packets = H264Format(track()).packetize(au(SPS, PPS))
    expected = b"\x78" + len(SPS).to_bytes(2, "big") + SPS + b"\x00\x04" + PPS
    assert packets == [(expected, True)]


def test_stap_a_header_takes_the_highest_nri() -> None:
    low, high = nal(0x06, 10), nal(0x21, 10)  # NRI 0 and NRI 1
    [(payload, _)] = H264Format(track()).packetize(au(low, high))
    assert payload[0] == 0x20 | 24


def test_large_idr_is_fragmented_into_fu_a() -> None:
    idr = nal(0x65, 3000)
    packets = H264Format(track(), max_payload_size=1400).packetize(au(SPS, PPS, idr))
    assert [len(p) for p, _ in packets] == [1 + 2 + len(SPS) + 2 + len(PPS), 1400, 1400, 2 + 2999 - 2 * 1398]
    assert [m for _, m in packets] == [False, False, False, True]
    fus = [p for p, _ in packets[1:]]
    assert [p[0] for p in fus] == [0x7C, 0x7C, 0x7C]  # F=0, NRI=3, type 28
    assert [p[1] for p in fus] == [0x85, 0x05, 0x45]  # S, -, E with type 5
    assert b"".join(p[2:] for p in fus) == idr[1:]


def test_nal_that_fits_alone_but_not_in_a_stap_a_goes_single() -> None:
    fmt = H264Format(track(), max_payload_size=100)
    a, b = nal(0x41, 99), nal(0x41, 100)
    assert fmt.packetize(au(a, b)) == [(a, False), (b, True)]


def test_aud_and_filler_are_not_sent() -> None:
    slice_ = nal(0x41, 50)
    assert H264Format(track()).packetize(au(AUD, slice_, FILLER)) == [(slice_, True)]


def test_empty_access_unit_gives_no_packets() -> None:
    assert H264Format(track()).packetize(au()) == []
    assert H264Format(track()).packetize(au(AUD)) == []


def test_annex_b_data_is_used_when_nal_units_are_absent() -> None:
    slice_ = nal(0x41, 50)
    unit = AccessUnit(0, 0, 0, False, b"\x00\x00\x00\x01" + AUD + b"\x00\x00\x01" + slice_)
    assert H264Format(track()).packetize(unit) == [(slice_, True)]


def test_split_annex_b() -> None:
    assert split_annex_b(b"\x00\x00\x00\x01\x67\x01\x00\x00\x01\x68\x02\x00\x00\x00\x01\x65") == [
        b"\x67\x01",
        b"\x68\x02",
        b"\x65",
    ]


# --- in-band parameter sets -------------------------------------------------------------------------


IDR = nal(0x65, 40)
OTHER_SPS = SPS[:-1] + b"\x82"
OTHER_PPS = PPS + b"\x02"


@pytest.mark.parametrize(
    ("sent", "received"),
    [
        ((IDR,), (SPS, PPS, IDR)),
        ((AUD, SEI, IDR), (SPS, PPS, SEI, IDR)),
        ((OTHER_SPS, IDR), (OTHER_SPS, PPS, IDR)),
        ((OTHER_PPS, IDR), (SPS, OTHER_PPS, IDR)),
        ((OTHER_SPS, OTHER_PPS, SEI, IDR), (OTHER_SPS, OTHER_PPS, SEI, IDR)),
        ((nal(0x41, 40),), (nal(0x41, 40),)),
        ((SEI, nal(0x41, 40)), (SEI, nal(0x41, 40))),
    ],
)
def test_parameter_sets_are_inserted_before_an_idr_that_lacks_them(
    sent: tuple[bytes, ...], received: tuple[bytes, ...]
) -> None:
    [unit] = depacketize(H264Format(track()).packetize(au(*sent)))
    assert unit.nal_units == received


# --- depacketizer ----------------------------------------------------------------------------------


def test_depacketized_unit_carries_annex_b_and_timestamp() -> None:
    slice_ = nal(0x41, 30)
    [unit] = depacketize([(slice_, True)], timestamp=1234)
    assert unit == DepacketizedUnit(1234, b"\x00\x00\x00\x01" + slice_, (slice_,))


def test_timestamp_change_completes_an_access_unit_whose_marker_was_lost() -> None:
    d = H264Depacketizer()
    a, b = nal(0x41, 30), nal(0x41, 31, fill=1)
    assert d.push(a, False, 1000, 1) == []
    units = d.push(b, True, 4000, 2)
    assert [(u.timestamp, u.nal_units) for u in units] == [(1000, (a,)), (4000, (b,))]


def test_lost_fu_a_fragment_drops_only_that_nal() -> None:
    fmt = H264Format(track(), max_payload_size=500)
    idr = nal(0x65, 2000)
    slice_ = nal(0x41, 100)
    packets = fmt.packetize(au(SPS, PPS, idr, slice_))
    assert len(packets) == 7  # STAP-A, 5 FU-A, single
    d = H264Depacketizer()
    out = [u for i, (p, m) in enumerate(packets) if i != 3 for u in d.push(p, m, 0, i)]
    assert [u.nal_units for u in out] == [(SPS, PPS, slice_)]


def test_fu_a_without_its_start_is_ignored() -> None:
    fus = H264Format(track(), max_payload_size=500).packetize(au(nal(0x41, 1500)))
    assert depacketize(fus[1:]) == []


def test_duplicate_packet_is_ignored() -> None:
    packets = H264Format(track(), max_payload_size=500).packetize(au(nal(0x41, 1500)))
    d = H264Depacketizer()
    out = []
    for i, (p, m) in enumerate(packets):
        out += d.push(p, m, 0, i)
        out += d.push(p, m, 0, i)
    assert [u.nal_units for u in out] == [(nal(0x41, 1500),)]


def test_malformed_stap_a_is_dropped_whole() -> None:
    good = b"\x00\x03\x41\x01\x02"
    assert depacketize([(b"\x78" + good + b"\x00\x09\x41", True)]) == []
    assert depacketize([(b"\x78" + good + b"\x00", True)]) == []
    assert depacketize([(b"\x78" + good + b"\x00\x00", True)]) == []
    assert [u.nal_units for u in depacketize([(b"\x78" + good, True)])] == [(b"\x41\x01\x02",)]


def test_sequence_numbers_wrap() -> None:
    packets = H264Format(track(), max_payload_size=100).packetize(au(nal(0x41, 500)))
    [unit] = depacketize(packets, seq=0xFFFE)
    assert unit.nal_units == (nal(0x41, 500),)


# --- properties ------------------------------------------------------------------------------------

SENDABLE_TYPES = [1, 2, 3, 4, 5, 6, 7, 8, 10, 11, 13, 14, 19, 20]
DROPPED_TYPES = [0, 9, 12, 24, 25, 26, 27, 28, 29, 30, 31]


@st.composite
def nal_units(draw: st.DrawFn, types: list[int]) -> bytes:
    header = draw(st.sampled_from([0x00, 0x20, 0x40, 0x60])) | draw(st.sampled_from(types))
    size = draw(st.one_of(st.integers(1, 60), st.integers(61, 5000)))
    pattern = draw(st.binary(min_size=1, max_size=8))
    return bytes([header]) + (pattern * size)[: size - 1]


access_units = st.lists(
    st.one_of(nal_units(SENDABLE_TYPES), nal_units(SENDABLE_TYPES), nal_units(DROPPED_TYPES)),
    max_size=12,
)


def sent_nals(nals: list[bytes]) -> list[bytes]:
    return [n for n in nals if n[0] & 0x1F not in DROPPED_TYPES]


@settings(max_examples=150, deadline=None)
@given(st.lists(access_units, min_size=1, max_size=5), st.integers(100, 1500))
def test_round_trip(aus: list[list[bytes]], max_size: int) -> None:
    fmt = H264Format(track(), max_payload_size=max_size)
    d = fmt.depacketizer()
    seq = 0
    expected, received = [], []
    for n, nals in enumerate(aus):
        packets = fmt.packetize(au(*nals))
        assert all(len(p) <= max_size for p, _ in packets)
        assert [m for _, m in packets] == [i == len(packets) - 1 for i in range(len(packets))]
        for payload, marker in packets:
            received += d.push(payload, marker, n * 3000, seq)
            seq += 1
        if sent_nals(nals):
            expected.append((n * 3000, sent_nals(nals)))
    assert [u.timestamp for u in received] == [t for t, _ in expected]
    config_sets = {SPS, PPS}
    for unit, (_, nals) in zip(received, expected, strict=True):
        out = list(unit.nal_units)
        assert [x for x in out if x not in config_sets] == [x for x in nals if x not in config_sets]
        types = [x[0] & 0x1F for x in out]
        if 5 in types:
            before_idr = types[: types.index(5)]
            assert 7 in before_idr and 8 in before_idr


@settings(max_examples=150, deadline=None)
@given(access_units, st.integers(100, 1500), st.sets(st.integers(0, 40)))
def test_loss_never_yields_a_damaged_nal(nals: list[bytes], max_size: int, lost: set[int]) -> None:
    fmt = H264Format(track(), max_payload_size=max_size)
    packets = fmt.packetize(au(*nals))
    d = fmt.depacketizer()
    out = [u for i, (p, m) in enumerate(packets) if i not in lost for u in d.push(p, m, 0, i)]
    whole = {*nals, SPS, PPS}
    assert all(x in whole for u in out for x in u.nal_units)


packet_streams = st.lists(
    st.tuples(st.binary(max_size=64), st.booleans(), st.integers(0, 3), st.integers(0, 5)), max_size=30
)


@settings(max_examples=300)
@given(packet_streams)
def test_arbitrary_payloads_never_raise(stream: list[tuple[bytes, bool, int, int]]) -> None:
    d = H264Depacketizer()
    for payload, marker, timestamp, seq in stream:
        for unit in d.push(payload, marker, timestamp, seq):
            assert unit.nal_units and all(unit.nal_units)
            assert all(0 < (x[0] & 0x1F) < 24 for x in unit.nal_units)


# --- a real encoder's stream ----------------------------------------------------------------------


def encode_h264(frames: int = 12) -> list[list[bytes]]:
    """Access units (NAL lists) of a tiny libx264 stream with in-band parameter sets."""
    ctx = av.CodecContext.create("libx264", "w")
    ctx.width, ctx.height, ctx.pix_fmt = 64, 64, "yuv420p"
    ctx.time_base = Fraction(1, 25)
    ctx.options = {"g": "5", "bf": "0", "preset": "ultrafast"}
    packets = []
    for i in range(frames):
        frame = av.VideoFrame.from_ndarray(np.full((64, 64, 3), i * 20, np.uint8), format="rgb24")
        frame = frame.reformat(format="yuv420p")
        frame.pts = i
        packets += ctx.encode(frame)
    packets += ctx.encode(None)
    return [split_annex_b(bytes(p)) for p in packets]


def test_real_stream_decodes_after_round_trip_without_in_band_parameter_sets() -> None:
    aus = encode_h264()
    sps = next(n for n in aus[0] if n[0] & 0x1F == 7)
    pps = next(n for n in aus[0] if n[0] & 0x1F == 8)
    fmt = H264Format(track((sps,), (pps,)), max_payload_size=300)
    assert fmt.fmtp().split(";")[1] == f"profile-level-id={sps[1:4].hex()}"
    d = fmt.depacketizer()
    decoder = av.CodecContext.create("h264", "r")
    seq, frames = 0, 0
    for n, nals in enumerate(aus):
        stripped = [x for x in nals if x[0] & 0x1F not in (7, 8)]  # as a late joiner sees the file
        for payload, marker in fmt.packetize(au(*stripped)):
            for unit in d.push(payload, marker, n * 3600, seq):
                frames += len(decoder.decode(av.Packet(unit.data)))
            seq += 1
    frames += len(decoder.decode(None))
    assert frames == len(aus)
