"""RFC 2435 JPEG payload format: what is refused, headers, decodable rebuilt frames, garbage input."""

from __future__ import annotations

from fractions import Fraction

import av
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from media.access_unit import AccessUnit
from media.track import Track
from streamd.rtp.payload import UnsupportedCodec, payload_format_for
from streamd.rtp.payload.mjpeg import (
    JpegFrame,
    MjpegDepacketizer,
    MjpegFormat,
    build_jpeg,
    parse_jpeg,
    tables_for_q,
)

TRACK = Track(0, "video", "mjpeg", Fraction(1, 25), width=64, height=48, pixel_format="yuvj420p")


def encode(pix_fmt: str = "yuvj420p", n: int = 2) -> list[bytes]:
    """JPEGs from FFmpeg's encoder (standard Huffman tables, a restart interval)."""
    ctx = av.CodecContext.create("mjpeg", "w")
    ctx.width, ctx.height, ctx.pix_fmt, ctx.time_base = 64, 48, pix_fmt, Fraction(1, 25)
    packets = []
    for i in range(n):
        rgb = np.zeros((48, 64, 3), dtype=np.uint8)
        rgb[:, :, 0] = np.arange(64, dtype=np.uint8) * 4 + i
        rgb[:, :, 1] = (np.arange(48, dtype=np.uint8) * 5)[:, None]
        frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format=pix_fmt)
        frame.pts = i
        packets += [bytes(p) for p in ctx.encode(frame)]
    return packets + [bytes(p) for p in ctx.encode(None)]


def decode(jpeg: bytes) -> np.ndarray:
    ctx = av.CodecContext.create("mjpeg", "r")
    [frame] = ctx.decode(av.Packet(jpeg))
    return frame.to_ndarray(format="yuv420p")


def test_sdp_uses_static_payload_type_26() -> None:
    fmt = payload_format_for(TRACK, 97)
    assert (fmt.payload_type, fmt.rtpmap(), fmt.fmtp()) == (26, "26 JPEG/90000", None)


@pytest.mark.parametrize(
    ("changes", "reason"),
    [({"pixel_format": "yuvj444p"}, "not 4:2:0 or 4:2:2"), ({"width": 100}, "multiples of 8")],
)
def test_registry_refuses_what_rfc_2435_cannot_carry(changes: dict, reason: str) -> None:
    fields = {"width": 64, "height": 48, "pixel_format": "yuvj420p", **changes}
    with pytest.raises(UnsupportedCodec, match=reason):
        MjpegFormat(Track(0, "video", "mjpeg", Fraction(1, 25), **fields))


def test_packetize_refuses_custom_huffman_tables_and_other_sampling() -> None:
    fmt = MjpegFormat(TRACK)
    with pytest.raises(UnsupportedCodec, match="Huffman"):
        jpeg = encode(n=1)[0]
        dht = jpeg.index(b"\xff\xc4")
        custom = jpeg[: dht + 5 + 16] + b"\x07" + jpeg[dht + 5 + 17 :]  # a different first DC symbol
        fmt.packetize(AccessUnit(0, 0, 0, True, custom))
    with pytest.raises(UnsupportedCodec, match="sampling"):
        fmt.packetize(AccessUnit(0, 0, 0, True, encode(pix_fmt="yuvj444p", n=1)[0]))
    with pytest.raises(UnsupportedCodec, match="SOI"):
        fmt.packetize(AccessUnit(0, 0, 0, True, b"not a jpeg"))


def test_first_packet_headers() -> None:
    jpeg = encode(n=1)[0]
    packets = MjpegFormat(TRACK, max_payload_size=300).packetize(AccessUnit(0, 0, 0, True, jpeg))
    first = packets[0][0]
    assert parse_jpeg(jpeg).restart_interval == 4
    # offset 0, type 65 (4:2:0 with restart markers), Q 255, 64x48 in 8-pixel blocks
    assert first[:8] == bytes([0, 0, 0, 0, 65, 255, 8, 6])
    assert first[8:12] == b"\x00\x04\xff\xff"  # restart interval 4, F = L = 1, count 0x3FFF
    assert first[12:16] == b"\x00\x00\x00\x80"  # in-band tables, 8-bit, 128 bytes
    assert int.from_bytes(packets[1][0][1:4], "big") == 300 - 8 - 4 - 4 - 128
    assert [m for _, m in packets] == [False] * (len(packets) - 1) + [True]


def test_rebuilt_frames_decode_to_the_same_pixels() -> None:
    fmt = MjpegFormat(TRACK, max_payload_size=200)
    d = fmt.depacketizer()
    seq = 0
    for i, jpeg in enumerate(encode(n=3)):
        out = []
        for payload, marker in fmt.packetize(AccessUnit(0, i, i, True, jpeg)):
            out += d.push(payload, marker, i * 3600, seq)
            seq += 1
        assert len(out) == 1
        assert np.array_equal(decode(out[0].data), decode(jpeg))


def test_tables_for_q() -> None:
    luma, chroma = tables_for_q(50)
    assert luma[:4] == bytes([16, 11, 12, 14]) and chroma[:3] == bytes([17, 18, 18])
    assert max(tables_for_q(1)[0]) == 255  # clamped to 8 bits
    assert set(tables_for_q(99)[1]) == {1, 2}


def test_receiver_builds_tables_from_q_below_128() -> None:
    payload = bytes([0, 0, 0, 0, 0, 75, 8, 6]) + b"\x12\x34"
    [unit] = MjpegDepacketizer().push(payload, True, 0, 0)
    frame = parse_jpeg(unit.data)
    assert (frame.jpeg_type, frame.width, frame.height, frame.scan) == (0, 64, 48, b"\x12\x34")
    assert (frame.luma_table, frame.chroma_table) == tables_for_q(75)


frames = st.builds(
    JpegFrame,
    st.integers(0, 1),
    st.integers(1, 255).map(lambda b: b * 8),
    st.integers(1, 255).map(lambda b: b * 8),
    st.binary(min_size=64, max_size=64),
    st.binary(min_size=64, max_size=64),
    st.sampled_from([0, 1, 40]),
    st.binary(min_size=1, max_size=3000).map(lambda b: b.replace(b"\xff", b"\xff\x00")),
)


@settings(max_examples=100, deadline=None)
@given(st.lists(frames, min_size=1, max_size=3), st.integers(145, 1500))
def test_roundtrip(jpegs: list[JpegFrame], limit: int) -> None:
    fmt = MjpegFormat(TRACK, max_payload_size=limit)
    d = fmt.depacketizer()
    out, seq = [], 0
    for i, frame in enumerate(jpegs):
        for payload, marker in fmt.packetize(AccessUnit(0, 0, 0, True, build_jpeg(frame))):
            assert len(payload) <= limit
            out += [u.data for u in d.push(payload, marker, i * 3600, seq)]
            seq += 1
    assert out == [build_jpeg(f) for f in jpegs]


@settings(max_examples=300)
@given(st.lists(st.tuples(st.binary(max_size=160), st.booleans(), st.integers(0, 3), st.integers(0, 0xFFFF))))
def test_garbage_never_raises(packets: list[tuple[bytes, bool, int, int]]) -> None:
    d = MjpegDepacketizer()
    for payload, marker, ts, seq in packets:
        d.push(payload, marker, ts, seq)
