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


def test_a_reader_that_joined_mid_gop_asks_for_a_keyframe_once() -> None:
    asked: list[bool] = []
    gate = KeyframeGate(has_video=True, on_wait=lambda: asked.append(True))
    assert not gate.admit(video=False, keyframe=True, leading=False)  # audio: nothing to ask yet
    assert asked == []
    for _ in range(3):
        assert not gate.admit(video=True, keyframe=False, leading=False)
    assert asked == [True]  # one request, however long it waits
    assert gate.admit(video=True, keyframe=True, leading=False)
    assert gate.admit(video=True, keyframe=False, leading=False)
    assert asked == [True]


def test_a_reader_that_joins_on_a_keyframe_asks_for_nothing() -> None:
    asked: list[bool] = []
    gate = KeyframeGate(has_video=True, on_wait=lambda: asked.append(True))
    assert gate.admit(video=True, keyframe=True, leading=False)
    assert gate.admit(video=True, keyframe=False, leading=False)
    assert asked == []


def test_a_reader_still_waiting_asks_again_a_second_later() -> None:
    from streamd.live.keyframe_gate import ASK_AGAIN_AFTER

    asked: list[bool] = []
    gate = KeyframeGate(has_video=True, on_wait=lambda: asked.append(True))
    for _ in range(ASK_AGAIN_AFTER + 1):
        gate.admit(video=True, keyframe=False, leading=False)
    assert asked == [True, True]
