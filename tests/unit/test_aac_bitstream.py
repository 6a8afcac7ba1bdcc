"""ADTS framing and AudioSpecificConfig parsing: hand-made vectors and properties."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from media import aac
from media.errors import MediaError
from media.track import AacConfig


def bits(text: str) -> bytes:
    """Bytes from a string of 0/1 digits (spaces ignored), zero-padded to a whole byte."""
    digits = text.replace(" ", "")
    digits += "0" * (-len(digits) % 8)
    return int(digits, 2).to_bytes(len(digits) // 8, "big")


# -- ADTS -------------------------------------------------------------------------------------

# A real header from libavcodec's encoder: AAC-LC, 48 kHz, stereo, 315-byte frame, no CRC.
HEADER = bytes.fromhex("fff14c80277ffc")


def test_parse_adts_header() -> None:
    h = aac.parse_adts_header(HEADER)
    assert (h.object_type, h.sample_rate, h.sampling_index, h.channel_config) == (2, 48000, 3, 2)
    assert (h.frame_length, h.header_length, h.raw_blocks, h.mpeg2) == (315, 7, 1, False)


def test_parse_adts_header_with_crc_and_mpeg2_id() -> None:
    # syncword, ID=1 (MPEG-2), layer 0, protection_absent=0; HE profile bits 00 (Main), 44.1 kHz, mono.
    header = bits("1111 1111 1111 1 00 0 00 0100 0 001 0000 0000001000000 11111111111 00")
    h = aac.parse_adts_header(header)
    assert (h.object_type, h.sample_rate, h.channel_config, h.mpeg2) == (1, 44100, 1, True)
    assert (h.header_length, h.frame_length) == (9, 64)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        HEADER[:6],
        b"\xff\xe1" + HEADER[2:],  # sync word cut short
        b"\xff\xf3" + HEADER[2:],  # layer != 0 (MP3 territory)
        HEADER[:2] + bytes([0x4C | 0x34]) + HEADER[3:],  # sampling index 13: reserved
        HEADER[:3] + b"\x80\x00\x1f\xfc",  # frame length 0
    ],
)
def test_parse_adts_header_rejects(data: bytes) -> None:
    with pytest.raises(MediaError):
        aac.parse_adts_header(data)


def test_build_adts_header_matches_encoder_output() -> None:
    assert aac.build_adts_header(2, 3, 2, 315 - 7) == HEADER


def test_split_adts_strips_headers() -> None:
    one, two = b"\x21\x10" * 5, b"\x21\x20" * 3
    data = aac.build_adts_header(2, 3, 2, len(one)) + one + aac.build_adts_header(2, 3, 2, len(two)) + two
    frames = aac.split_adts(data)
    assert [raw for _, raw in frames] == [one, two]
    assert frames[1][0].frame_length == len(two) + 7


def test_split_adts_with_crc() -> None:
    header = bits("1111 1111 1111 0 00 0 01 0011 0 010 0000 0000000001100 11111111111 00")
    payload = b"\xab\xcd\x21\x00\x00"  # CRC word, then the raw frame
    assert aac.split_adts(header + payload) == [(aac.parse_adts_header(header), b"\x21\x00\x00")]


def test_split_adts_rejects_truncated_frame_and_garbage() -> None:
    frame = aac.build_adts_header(2, 3, 2, 10) + b"\x00" * 10
    with pytest.raises(MediaError):
        aac.split_adts(frame[:-1])
    with pytest.raises(MediaError):
        aac.split_adts(frame + b"\x00\x01")


def test_looks_like_adts() -> None:
    assert aac.looks_like_adts(HEADER)
    assert not aac.looks_like_adts(b"\x21\x10")
    assert not aac.looks_like_adts(b"\xff")


def test_audio_specific_config_from_adts() -> None:
    assert aac.audio_specific_config_from_adts(aac.parse_adts_header(HEADER)) == bytes.fromhex("1190")


# -- AudioSpecificConfig ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("asc", "expected"),
    [
        # AAC-LC 44.1 kHz stereo.
        (bytes.fromhex("1210"), (2, 44100, 2, None)),
        # AAC-LC 48 kHz stereo, FFmpeg's form: sync extension 0x2b7 with sbrPresentFlag = 0.
        (bytes.fromhex("119056e500"), (2, 48000, 2, None)),
        # Explicit hierarchical HE-AAC: object type 5, core 22.05 kHz, SBR at 44.1 kHz, then AAC-LC.
        (bytes.fromhex("2b920800"), (2, 22050, 2, 44100)),
        # HE-AAC v2 (PS, object type 29), mono core at 24 kHz, output 48 kHz.
        (bits("11101 0110 0001 0011 00010 000"), (2, 24000, 1, 48000)),
        # Backward-compatible SBR: AAC-LC 24 kHz + sync extension 0x2b7, type 5, present, 48 kHz.
        (bits("00010 0110 0010 000 01010110111 00101 1 0011"), (2, 24000, 2, 48000)),
        # Same plus PS sync extension 0x548.
        (bits("00010 0110 0001 000 01010110111 00101 1 0011 10101001000 1"), (2, 24000, 1, 48000)),
        # Escaped object type 31 + 6 bits: 32 + 10 = 42 (USAC), 48 kHz, stereo.
        (bits("11111 001010 0011 0010"), (42, 48000, 2, None)),
        # Explicit 24-bit rate 22000 Hz, mono.
        (bits("00010 1111" + format(22000, "024b") + "0001 000"), (2, 22000, 1, None)),
        # 7.1 (channel configuration 7 means 8 channels).
        (bits("00010 0011 0111 000"), (2, 48000, 8, None)),
    ],
)
def test_parse_audio_specific_config(asc: bytes, expected: tuple[int, int, int, int | None]) -> None:
    config = aac.parse_audio_specific_config(asc)
    assert (config.object_type, config.sample_rate, config.channels, config.extension_sample_rate) == expected
    assert config.audio_specific_config == asc
    assert config.adts_input is False


@pytest.mark.parametrize(
    "asc",
    [
        b"",
        b"\x12",  # truncated
        bits("00010 1101 0010 000"),  # reserved sampling index 13
        bits("00010 0011 1000 000"),  # reserved channel configuration 8
        bits("00010 1111" + "0" * 24 + "0010"),  # explicit rate 0
        bits("00101 0011 0010"),  # SBR without its extension rate
    ],
)
def test_parse_audio_specific_config_rejects(asc: bytes) -> None:
    with pytest.raises(MediaError):
        aac.parse_audio_specific_config(asc)


def test_build_audio_specific_config() -> None:
    assert aac.build_audio_specific_config(2, 48000, 2) == bytes.fromhex("1190")
    assert aac.build_audio_specific_config(2, 44100, 2) == bytes.fromhex("1210")
    assert aac.build_audio_specific_config(42, 48000, 2) == bits("11111 001010 0011 0010 000")
    for invalid in (0, 31, 96):
        with pytest.raises(MediaError):
            aac.build_audio_specific_config(invalid, 48000, 2)


# -- properties -------------------------------------------------------------------------------


@given(st.binary(max_size=40))
def test_parse_audio_specific_config_only_raises_media_error(data: bytes) -> None:
    try:
        config = aac.parse_audio_specific_config(data)
    except MediaError:
        return
    assert isinstance(config, AacConfig) and config.sample_rate > 0


@given(st.binary(max_size=200))
def test_split_adts_only_raises_media_error(data: bytes) -> None:
    try:
        frames = aac.split_adts(data)
    except MediaError:
        return
    assert sum(h.frame_length for h, _ in frames) == len(data)


@given(st.binary(max_size=20), st.integers(0, 20))
def test_parse_adts_header_only_raises_media_error(data: bytes, offset: int) -> None:
    with contextlib.suppress(MediaError):
        aac.parse_adts_header(data, offset)


@given(
    st.integers(1, 95).filter(lambda t: t not in (aac.AOT_SBR, aac.AOT_PS, aac.AOT_ESCAPE)),
    st.one_of(st.sampled_from(aac.SAMPLE_RATES), st.integers(1, (1 << 24) - 1)),
    st.sampled_from(sorted(aac.CHANNELS)),
)
def test_audio_specific_config_round_trip(object_type: int, rate: int, channel_config: int) -> None:
    config = aac.parse_audio_specific_config(
        aac.build_audio_specific_config(object_type, rate, channel_config)
    )
    assert (config.object_type, config.sample_rate) == (object_type, rate)
    assert config.channels == aac.CHANNELS[channel_config]
    assert config.extension_sample_rate is None


@given(
    st.lists(
        st.tuples(st.integers(1, 4), st.integers(0, 12), st.integers(0, 7), st.binary(max_size=100)),
        max_size=5,
    )
)
def test_adts_round_trip(frames: list[tuple[int, int, int, bytes]]) -> None:
    data = b"".join(aac.build_adts_header(t, i, c, len(p)) + p for t, i, c, p in frames)
    parsed = aac.split_adts(data)
    assert [raw for _, raw in parsed] == [p for *_, p in frames]
    for (header, _), (t, i, c, _) in zip(parsed, frames, strict=True):
        assert (header.object_type, header.sampling_index, header.channel_config) == (t, i, c)
        config = aac.parse_audio_specific_config(aac.audio_specific_config_from_adts(header))
        assert (config.object_type, config.sample_rate) == (t, aac.SAMPLE_RATES[i])
