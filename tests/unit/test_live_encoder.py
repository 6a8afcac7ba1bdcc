"""media/live_encoder.py: numpy frames and samples in, access units out that decode back to them."""

from __future__ import annotations

import itertools
from fractions import Fraction

import av
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from media.h264 import NAL_IDR, NAL_PPS, NAL_SPS, nal_type
from media.live_encoder import VIDEO_CLOCK, FrameClock, LiveAudioEncoder, LiveVideoEncoder
from streamd.rtp.payload.registry import payload_format_for

W, H, FPS = 160, 96, 25


def pattern(n: int, channels: int = 3) -> np.ndarray:
    frame = np.zeros((H, W, channels), np.uint8)
    frame[:, (n * 7) % W] = 255
    frame[(n * 3) % H, :, 0] = 200
    return frame


def decode_video(units: list) -> list[av.VideoFrame]:
    decoder = av.CodecContext.create("h264", "r")
    frames = []
    for au in units:
        frames += decoder.decode(av.Packet(au.data))
    return frames + decoder.decode(None)


@pytest.mark.parametrize("pixel_format", ["rgb24", "bgr24", "bgra", "gray", "yuv420p"])
def test_frames_decode_back_to_as_many_pictures_of_the_size(pixel_format: str) -> None:
    encoder = LiveVideoEncoder(W, H, FPS, pixel_format=pixel_format)
    shape = {"gray": (H, W), "yuv420p": (H * 3 // 2, W), "bgra": (H, W, 4)}.get(pixel_format, (H, W, 3))
    units = []
    for n in range(30):
        frame = pattern(n, 4 if pixel_format == "bgra" else 3)
        frame = frame.reshape(-1)[: np.prod(shape)].reshape(shape) if len(shape) == 2 else frame
        units += encoder.encode(np.ascontiguousarray(frame), n * VIDEO_CLOCK // FPS)
    units += encoder.flush()
    frames = decode_video(units)
    assert len(frames) == 30
    assert {(f.width, f.height) for f in frames} == {(W, H)}


def test_live_tuning_no_delay_no_b_frames_keyframe_every_second_with_parameter_sets() -> None:
    encoder = LiveVideoEncoder(W, H, FPS, keyframe_interval=1.0)
    keyframes = []
    for n in range(60):
        out = encoder.encode(pattern(0), n * 3600)  # a still picture: no scene cuts
        assert len(out) == 1, "zerolatency: every frame comes out at once"
        (au,) = out
        assert au.pts == au.dts == n * 3600
        types = [nal_type(nal) for nal in au.nal_units]
        if au.keyframe:
            keyframes.append(n)
            assert NAL_IDR in types and NAL_SPS in types and NAL_PPS in types
            assert types.index(NAL_SPS) < types.index(NAL_IDR)
        assert au.data.count(b"\x00\x00\x01") >= len(au.nal_units)  # Annex B, split into NAL units
    assert keyframes == [0, 25, 50]


def test_the_track_is_known_before_the_first_frame_and_matches_it() -> None:
    encoder = LiveVideoEncoder(W, H, 30000 / 1001)
    track = encoder.track
    assert (track.codec, track.width, track.height, track.time_base) == ("h264", W, H, Fraction(1, 90000))
    assert track.frame_rate == Fraction(30000, 1001)
    fmtp = payload_format_for(track, 96).fmtp()
    assert "sprop-parameter-sets=" in fmtp and "packetization-mode=1" in fmtp
    (first,) = encoder.encode(pattern(0), 0)
    assert track.config.sps[0] in first.nal_units
    assert track.config.pps[0] in first.nal_units


def test_timestamps_that_do_not_grow_are_moved_past_the_previous_one() -> None:
    encoder = LiveVideoEncoder(W, H, FPS)
    pts = [au.pts for n, t in enumerate([0, 3600, 3600, 100]) for au in encoder.encode(pattern(n), t)]
    assert pts == [0, 3600, 3601, 3602]


def test_wrong_shapes_and_settings_are_refused() -> None:
    encoder = LiveVideoEncoder(W, H, FPS)
    with pytest.raises(ValueError, match=r"\(96, 160, 3\)"):
        encoder.encode(np.zeros((H, W + 2, 3), np.uint8), 0)
    with pytest.raises(ValueError, match="uint8"):
        encoder.check(np.zeros((H, W, 3), np.float32))
    with pytest.raises(ValueError, match="even"):
        LiveVideoEncoder(161, 96, FPS)
    with pytest.raises(ValueError, match="pixel_format"):
        LiveVideoEncoder(W, H, FPS, pixel_format="nv12")
    with pytest.raises(ValueError, match="codec"):
        LiveAudioEncoder(codec="mp3")


def tone(seconds: float, rate: int, channels: int, dtype: type) -> np.ndarray:
    t = np.arange(round(seconds * rate)) / rate
    wave = 0.3 * np.sin(2 * np.pi * 440 * t)
    wave = (wave * 32767).astype(np.int16) if dtype is np.int16 else wave.astype(dtype)
    return wave if channels == 1 else np.repeat(wave[:, None], channels, axis=1)


@pytest.mark.parametrize(
    ("codec", "rate", "channels", "dtype", "clock", "frame"),
    [
        ("aac", 44100, 2, np.float32, 44100, 1024),
        ("aac", 48000, 1, np.int16, 48000, 1024),
        ("opus", 48000, 2, np.int16, 48000, 960),
        ("opus", 44100, 1, np.float64, 48000, 960),  # resampled: RFC 7587's clock is always 48 kHz
    ],
)
def test_audio_chunks_of_any_size_decode_back(
    codec: str, rate: int, channels: int, dtype: type, clock: int, frame: int
) -> None:
    encoder = LiveAudioEncoder(rate, channels, codec=codec)
    track = encoder.track
    assert (track.codec, track.sample_rate, track.time_base) == (codec, clock, Fraction(1, clock))
    fmt = payload_format_for(track, 97)
    assert fmt.clock_rate == clock
    samples = tone(1.0, rate, channels, dtype)
    units = []
    for start in range(0, len(samples), 777):  # chunk sizes unrelated to the codec's frame size
        units += encoder.encode(samples[start : start + 777], start_ticks=5000)
    units += encoder.flush()
    steps = {b.pts - a.pts for a, b in itertools.pairwise(units)}
    assert steps == {frame}, "one coded frame per access unit, contiguous"
    assert 5000 - 1024 <= units[0].pts <= 5000  # the first chunk's place, less the encoder's priming
    decoder = av.CodecContext.create(codec, "r")
    decoder.extradata = track.extradata
    decoded = sum(f.samples for au in units for f in decoder.decode(av.Packet(au.data)))
    assert clock <= decoded <= clock + 3 * frame  # one second, plus priming and padding
    if codec == "aac":
        assert track.config.sample_rate == clock and track.config.channels == channels
        assert f"config={track.config.audio_specific_config.hex()}" in fmt.fmtp()


def test_audio_shape_must_match_the_channels() -> None:
    encoder = LiveAudioEncoder(48000, 2)
    with pytest.raises(ValueError, match=r"\(n, 2\)"):
        encoder.encode(np.zeros(480, np.float32))
    with pytest.raises(ValueError):
        encoder.encode(np.zeros((480, 2), np.int32))


@given(st.lists(st.floats(-0.49, 0.49), min_size=1, max_size=60))
def test_frame_clock_removes_jitter_under_half_a_frame(jitter: list[float]) -> None:
    clock = FrameClock(Fraction(25))
    ticks = [clock.ticks((n + j) / 25) for n, j in enumerate(jitter)]
    assert ticks == [n * 3600 for n in range(len(jitter))]


@given(st.lists(st.floats(0, 0.2), min_size=1, max_size=80))
def test_frame_clock_grows_and_stays_at_most_a_frame_ahead(gaps: list[float]) -> None:
    clock = FrameClock(Fraction(30000, 1001))
    now, previous = 0.0, -1
    for gap in gaps:
        now += gap
        ticks = clock.ticks(now)
        if ticks is None:
            continue
        assert ticks > previous
        assert ticks / VIDEO_CLOCK <= now + 1.5 * 1001 / 30000
        previous = ticks


def test_frame_clock_thins_a_faster_source_to_its_rate() -> None:
    clock = FrameClock(Fraction(25))
    kept = [t for n in range(300) if (t := clock.ticks(n / 50)) is not None]  # 50 frames/s for 6 s
    assert 150 <= len(kept) <= 152  # 6 s of 25 frames/s, give or take the one frame of lead
