"""Decode timestamps from PTS-only video (media/dts.py) and where recordings are cut (media/segmenter.py)."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from media.dts import DtsGenerator
from media.segmenter import Placement, Segmenter


def run(pts: list[int], lookahead: int = 16) -> tuple[list[tuple[int, int, int]], DtsGenerator[int]]:
    generator: DtsGenerator[int] = DtsGenerator(lookahead)
    out = []
    for i, p in enumerate(pts):
        out += generator.push(p, i)
    out += generator.flush()
    return out, generator


def decode_order(display: list[int], pattern: list[int]) -> list[int]:
    """Display order to decode order, as an encoder with B-frames does: each anchor before its B-frames."""
    order: list[int] = []
    i = 0
    for b_frames in itertools.cycle(pattern):
        if i >= len(display):
            break
        anchor = min(i + b_frames, len(display) - 1)
        order.append(display[anchor])
        order += display[i:anchor]
        i = anchor + 1
    return order


def test_ibbp_gets_frame_spaced_dts_below_pts() -> None:
    display = [i * 3600 for i in range(12)]
    pts = decode_order(display, [0, 2])  # I P B B P B B ...
    out, generator = run(pts)
    assert [p for p, _, _ in out] == pts
    dts = [d for _, d, _ in out]
    assert generator.depth == 1 and generator.adjusted == 0
    assert dts == [display[0] - 3600, *display[:-1]]  # one frame before, then the display order


def test_no_reordering_keeps_dts_equal_to_pts() -> None:
    pts = [i * 3000 for i in range(40)]
    out, generator = run(pts)
    assert [(p, d) for p, d, _ in out] == [(p, p) for p in pts]
    assert generator.depth == 0


def test_short_stream_is_flushed_in_order() -> None:
    out, _ = run([0, 7200, 3600])
    assert [i for _, _, i in out] == [0, 1, 2]
    assert [d for _, d, _ in out] == [-3600, 0, 3600]


@settings(max_examples=300, deadline=None)
@given(
    steps=st.lists(st.integers(1, 9000), min_size=1, max_size=120),
    pattern=st.lists(st.integers(0, 7), min_size=1, max_size=6),
    start=st.integers(-(2**40), 2**40),
)
def test_encoder_like_reordering_needs_no_adjustment(
    steps: list[int], pattern: list[int], start: int
) -> None:
    display = list(itertools.accumulate(steps, initial=start))
    pts = decode_order(display, pattern)
    out, generator = run(pts)
    assert [i for _, _, i in out] == list(range(len(pts)))  # every unit, in order
    assert [p for p, _, _ in out] == pts  # PTS untouched
    dts = [d for _, d, _ in out]
    assert all(a < b for a, b in itertools.pairwise(dts))
    assert all(d <= p for p, d, _ in out)
    assert generator.adjusted == 0


@settings(max_examples=300, deadline=None)
@given(pts=st.lists(st.integers(-(2**33), 2**33), max_size=80), lookahead=st.integers(1, 20))
def test_any_sequence_is_made_muxable(pts: list[int], lookahead: int) -> None:
    """Garbage in (a broken publisher): still strictly growing DTS, never above the PTS."""
    out, generator = run(pts, lookahead)
    assert [i for _, _, i in out] == list(range(len(pts)))
    dts = [d for _, d, _ in out]
    assert all(a < b for a, b in itertools.pairwise(dts))
    assert all(d <= p for p, d, _ in out)
    moved = [(p, q) for p, (q, _, _) in zip(pts, out, strict=True) if p != q]
    assert len(moved) == generator.adjusted and all(q > p for p, q in moved)


def test_lookahead_must_be_positive() -> None:
    with pytest.raises(ValueError):
        DtsGenerator(0)


def test_segments_start_at_keyframes_after_the_length() -> None:
    s = Segmenter(2.0, has_video=True)
    assert s.place(0.0, video=False, keyframe=True) is Placement.SKIP  # audio before any picture
    assert s.place(0.1, video=True, keyframe=False) is Placement.SKIP
    assert s.place(0.2, video=True, keyframe=True) is Placement.START
    assert s.place(0.25, video=False, keyframe=True) is Placement.APPEND
    assert s.place(1.2, video=True, keyframe=True) is Placement.APPEND  # too early
    assert s.place(2.3, video=True, keyframe=False) is Placement.APPEND  # long enough, no keyframe
    assert s.place(2.4, video=False, keyframe=True) is Placement.APPEND  # audio never cuts video
    assert s.place(2.5, video=True, keyframe=True) is Placement.START
    assert s.start == 2.5
    assert s.place(2.6, video=True, keyframe=True, force=True) is Placement.START  # new parameter sets


def test_audio_only_segments_cut_at_any_unit() -> None:
    s = Segmenter(1.0, has_video=False)
    assert s.place(5.0, video=False, keyframe=True) is Placement.START
    assert s.place(5.99, video=False, keyframe=True) is Placement.APPEND
    assert s.place(6.0, video=False, keyframe=True) is Placement.START


def test_reset_waits_for_the_next_keyframe() -> None:
    s = Segmenter(1.0, has_video=True)
    assert s.place(0.0, video=True, keyframe=True) is Placement.START
    s.reset()
    assert s.place(0.1, video=True, keyframe=False) is Placement.SKIP
    assert s.place(0.5, video=True, keyframe=True) is Placement.START
