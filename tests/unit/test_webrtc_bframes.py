"""A live H.264 path with B-frames is recognised from its timestamps and converted for WebRTC."""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import av
import pytest

from media import h264
from media.access_unit import AccessUnit
from media.track import H264Config, Track
from media.video_transcode import VideoToH264
from streamd.live.announced import AnnouncedTrack
from streamd.live.hub import LivePath
from streamd.live.reorder import ReorderDetector
from streamd.rtp.payload.registry import payload_format_for
from streamd.webrtc.convert import live_convertible
from streamd.webrtc.media import live_sendables
from tests.h264_bits import slice_type

TICKS = 3600  # 25 fps in 90 kHz


def encoded(b_frames: int, frames: int = 12) -> list[AccessUnit]:
    """libx264's access units in decode order, timestamps in 90 kHz ticks."""
    encoder: Any = av.CodecContext.create("libx264", "w")
    encoder.width, encoder.height, encoder.pix_fmt = 64, 48, "yuv420p"
    encoder.time_base, encoder.framerate = Fraction(1, 90000), Fraction(25)
    encoder.max_b_frames = b_frames
    encoder.options = {"preset": "ultrafast" if b_frames == 0 else "veryfast", "bf": str(b_frames)}
    packets = []
    for i in range(frames):
        frame = av.VideoFrame(64, 48, "yuv420p")
        for plane in frame.planes:
            plane.update(bytes([(i * 20) % 256]) * plane.buffer_size)
        frame.pts = i * TICKS
        packets += encoder.encode(frame)
    packets += encoder.encode(None)
    return [
        AccessUnit(0, p.pts, p.dts, p.is_keyframe, bytes(p), tuple(h264.split_annexb(bytes(p))))
        for p in packets
    ]


def live_path(units: list[AccessUnit]) -> LivePath:
    config = h264.config_from_nals(n for u in units for n in u.nal_units)
    track = Track(0, "video", "h264", Fraction(1, 90000), config=config)
    announced = AnnouncedTrack(0, "trackID=0", track, payload_format_for(track, 96), True)
    live = LivePath.from_tracks("live/bf", [announced], "s1")
    live.online = True
    for unit in units:
        live.push_unit(0, unit)
    return live


def test_timestamps_going_back_mean_reordered_pictures() -> None:
    detector = ReorderDetector()
    for pts, key in [(0, True), (3, False), (1, False), (2, False), (6, False), (4, False)]:
        detector.see(pts, key)
    assert detector.reordered


def test_in_order_pictures_and_one_hiccup_are_not_reordered() -> None:
    detector = ReorderDetector()
    for pts in range(10):
        detector.see(pts, pts == 0)
    detector.see(5, False)  # once: a clock hiccup, not B-frames
    detector.see(100, True)  # a keyframe starts afresh (a publisher's restart may reset its clock)
    detector.see(101, False)
    assert not detector.reordered


@pytest.mark.parametrize("b_frames", [0, 2])
def test_a_live_path_with_b_frames_is_offered_converted(b_frames: int) -> None:
    live = live_path(encoded(b_frames))
    assert live.tracks[0].order.reordered == (b_frames > 0)
    assert live_convertible(live.tracks[0]) == (b_frames > 0)
    (sendable,) = live_sendables(live)
    assert sendable.codec == "h264" and sendable.why_not is None
    assert (sendable.profile_level_id == "42e01f") == (b_frames > 0)


def test_live_h264_with_b_frames_becomes_baseline_in_presentation_order() -> None:
    units = encoded(2)
    assert [u.pts for u in units] != sorted(u.pts for u in units)  # B-frames: decode order differs
    config = h264.config_from_nals(n for u in units for n in u.nal_units)
    assert isinstance(config, H264Config)
    source = Track(0, "video", "h264", Fraction(1, 90000), config=config)  # as announced: no size
    coder = VideoToH264(source)
    assert (coder.width, coder.height) == (64, 48)
    out = [a for u in units for a in coder.feed(u)] + coder.flush()
    assert [a.pts for a in out] == sorted(u.pts for u in units)
    sps = coder.track.config.sps[0]
    assert sps[1] == 66  # profile_idc: baseline
    for a in out:
        for nal in a.nal_units:
            if h264.nal_type(nal) in (1, 5):
                assert slice_type(nal) % 5 in (0, 2)  # P or I, never B
