"""The one keyframe gate of live readers and the multicast send."""

from __future__ import annotations

from streamd.live.keyframe_gate import KeyframeGate


def test_video_begins_on_a_keyframe_and_audio_waits_for_it() -> None:
    gate = KeyframeGate(has_video=True)
    assert not gate.admit(video=False, keyframe=True, leading=False)
    assert not gate.admit(video=True, keyframe=False, leading=False)
    assert gate.admit(video=True, keyframe=True, leading=False)
    assert gate.admit(video=False, keyframe=False, leading=False)
    assert gate.admit(video=True, keyframe=False, leading=False)


def test_rasl_pictures_after_the_first_cra_are_skipped_then_admitted() -> None:
    gate = KeyframeGate(has_video=True)
    assert gate.admit(video=True, keyframe=True, leading=False)
    assert not gate.admit(video=True, keyframe=False, leading=True)
    assert gate.admit(video=False, keyframe=False, leading=False)  # audio is never leading
    assert not gate.admit(video=True, keyframe=False, leading=True)
    assert gate.admit(video=True, keyframe=False, leading=False)
    assert gate.admit(video=True, keyframe=False, leading=True)  # later RASL: decodable now


def test_audio_only_begins_at_once() -> None:
    assert KeyframeGate(has_video=False).admit(video=False, keyframe=False, leading=False)
