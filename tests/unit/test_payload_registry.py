"""Track -> payload format mapping, and the reasons given when there is none."""

from __future__ import annotations

from fractions import Fraction

import pytest

from media.track import AacConfig, H264Config, Track
from streamd.rtp.payload import (
    AacFormat,
    H264Format,
    PayloadFormat,
    UnsupportedCodec,
    payload_format_for,
    supported_codecs,
)

SPS = bytes.fromhex("6764000aacb2084d08")
PPS = bytes.fromhex("68ebc3cb22c0")
H264 = Track(0, "video", "h264", Fraction(1, 90000), config=H264Config((SPS,), (PPS,), 4))
AAC = Track(
    1, "audio", "aac", Fraction(1, 48000), sample_rate=48000, channels=2,
    config=AacConfig(bytes.fromhex("1190"), object_type=2, sample_rate=48000, channels=2),
)  # fmt: skip


@pytest.mark.parametrize(("track", "cls"), [(H264, H264Format), (AAC, AacFormat)])
def test_known_codecs(track: Track, cls: type[PayloadFormat]) -> None:
    fmt = payload_format_for(track, 96 + track.index, max_payload_size=1200)
    assert isinstance(fmt, cls)
    assert fmt.payload_type == 96 + track.index
    assert fmt.max_payload_size == 1200
    assert fmt.rtpmap().startswith(f"{96 + track.index} ")
    assert fmt.fmtp().startswith(f"{96 + track.index} ")


def test_default_max_payload_size() -> None:
    assert payload_format_for(H264, 96).max_payload_size == 1400


def test_supported_codecs() -> None:
    video = {"h264", "hevc", "vp8", "vp9", "av1", "mjpeg", "mpeg1video", "mpeg2video"}
    assert video | {"aac"} <= set(supported_codecs())


@pytest.mark.parametrize(
    ("track", "reason"),
    [
        (Track(0, "video", "mpeg4", Fraction(1, 25)), "no RTP payload format for codec 'mpeg4' yet"),
        (Track(0, "video", "h264", Fraction(1, 25)), "H.264 track without SPS/PPS"),
        (Track(0, "audio", "aac", Fraction(1, 48000)), "AAC track without AudioSpecificConfig"),
        # a config of the wrong kind is as good as none
        (Track(0, "video", "h264", Fraction(1, 25), config=AAC.config), "H.264 track without SPS/PPS"),
    ],
)
def test_unsupported_tracks_say_why(track: Track, reason: str) -> None:
    with pytest.raises(UnsupportedCodec) as err:
        payload_format_for(track, 96)
    assert err.value.reason == reason
    assert str(err.value) == reason
