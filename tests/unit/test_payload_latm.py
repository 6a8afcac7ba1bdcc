"""MP4A-LATM (RFC 6416) as GStreamer publishes AAC: StreamMuxConfig and AudioMuxElements."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from media.aac import parse_audio_specific_config
from media.errors import MediaError
from media.latm import build_audio_mux_element, parse_stream_mux_config, split_audio_mux_element
from streamd.rtp.payload.latm import LatmDepacketizer


def test_gstreamer_config_with_ffmpeg_style_sbr_signal() -> None:
    """``rtpmp4apay`` of an ffmpeg-encoded file: the embedded config carries the 0x2b7 sync
    extension, which belongs to the config, not to the StreamMuxConfig after it."""
    config = parse_stream_mux_config(bytes.fromhex("40002410adca00"))
    assert config.audio_specific_config.hex() == "120856e500" and config.subframes == 1
    aac = parse_audio_specific_config(config.audio_specific_config)
    assert (aac.object_type, aac.sample_rate, aac.channels) == (2, 44100, 1)


def test_plain_config() -> None:
    # version 0, one subframe, AAC-LC 48 kHz stereo (1190), frameLengthType 0, fullness 0xff
    config = parse_stream_mux_config(bytes.fromhex("400023203fc0"))
    assert config.audio_specific_config.hex() == "1190"


@pytest.mark.parametrize("hex_config", ["", "c0", "4000", "40102410adca00"])
def test_unsupported_or_truncated_configs(hex_config: str) -> None:
    with pytest.raises(MediaError):
        parse_stream_mux_config(bytes.fromhex(hex_config))


@given(st.binary(max_size=32))
def test_config_parser_never_raises_anything_else(data: bytes) -> None:
    with contextlib.suppress(MediaError):
        parse_stream_mux_config(data)


@given(st.lists(st.binary(max_size=700), min_size=1, max_size=4))
def test_mux_element_round_trip(units: list[bytes]) -> None:
    element = build_audio_mux_element(units)
    assert split_audio_mux_element(element, len(units)) == units


def test_lengths_of_255_and_more() -> None:
    assert build_audio_mux_element([b"x" * 255])[:2] == b"\xff\x00"
    with pytest.raises(MediaError):
        split_audio_mux_element(b"\xff\xff", 1)
    with pytest.raises(MediaError):
        split_audio_mux_element(b"\x05abc", 1)


def test_depacketizer_joins_fragments_and_drops_broken_elements() -> None:
    config = parse_stream_mux_config(bytes.fromhex("40002410adca00"))
    depacketizer = LatmDepacketizer(config)
    frame = bytes(range(256)) * 2
    element = build_audio_mux_element([frame])
    assert depacketizer.push(element[:300], False, 1000, 1) == []
    [unit] = depacketizer.push(element[300:], True, 1000, 2)
    assert unit.data == frame and unit.timestamp == 1000
    assert depacketizer.push(element[:300], False, 2024, 3) == []
    assert depacketizer.push(element[300:], True, 2024, 5) == []  # seq 4 lost: dropped whole
    [unit] = depacketizer.push(element, True, 3048, 6)
    assert unit.timestamp == 3048


@given(st.lists(st.tuples(st.binary(max_size=300), st.booleans(), st.integers(0, 0xFFFF)), max_size=30))
def test_depacketizer_never_raises(packets: list[tuple[bytes, bool, int]]) -> None:
    depacketizer = LatmDepacketizer(parse_stream_mux_config(bytes.fromhex("40002410adca00")))
    for payload, marker, seq in packets:
        for unit in depacketizer.push(payload, marker, 0, seq):
            assert unit.data
