"""A transcoded track is described without opening codecs, and exactly as the encoder will write it."""

from __future__ import annotations

from dataclasses import replace
from fractions import Fraction

import pytest

from media.errors import MediaError
from media.track import Track
from media.transcode import AudioTranscoder, transcoded_track


def _vorbis(rate: int, channels: int) -> Track:
    return Track(
        index=1,
        kind="audio",
        codec="vorbis",
        time_base=Fraction(1, rate),
        sample_rate=rate,
        channels=channels,
    )


@pytest.mark.parametrize("target", ["aac", "opus"])
@pytest.mark.parametrize(("rate", "channels"), [(44100, 2), (48000, 1), (8000, 1), (22050, 6), (11111, 2)])
def test_description_matches_the_encoder(target: str, rate: int, channels: int) -> None:
    source = _vorbis(rate, channels)
    described = transcoded_track(source, target)
    actual = AudioTranscoder(source, target)._encoder
    assert described.extradata == bytes(actual.extradata)
    assert described.channels == actual.layout.nb_channels
    assert described.sample_rate == actual.sample_rate
    assert described.time_base == Fraction(1, actual.sample_rate)


def test_missing_decoder_is_a_media_error() -> None:
    with pytest.raises(MediaError, match="no decoder"):
        transcoded_track(replace(_vorbis(48000, 2), codec="no-such-codec"), "aac")
