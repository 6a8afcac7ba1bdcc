"""Cutting a file into HLS segments, the object cache, and the playlists we write (m3u8 reads them)."""

from __future__ import annotations

import asyncio
import itertools
from fractions import Fraction

import m3u8
import pytest
from hypothesis import given
from hypothesis import strategies as st

from media.keyframe_index import CutPoint, KeyframeIndex
from streamd.hls import playlists
from streamd.hls.object_cache import ObjectCache
from streamd.hls.vod_plan import TOLERANCE, cut, shift, target_duration


def index(seconds: list[Fraction], end: Fraction, first_dts: Fraction = Fraction(0)) -> KeyframeIndex:
    points = tuple(CutPoint(int(s * 1000), s) for s in seconds)
    return KeyframeIndex(0, "pts", points, first_dts, end, Fraction(1, 1000))


def test_cuts_fall_on_the_first_keyframe_past_the_target() -> None:
    spans = cut(index([Fraction(s) for s in range(10)], Fraction(10)), Fraction(4))
    assert [(s.start and s.start.seconds, s.end and s.end.seconds, s.duration) for s in spans] == [
        (None, 4, 4),
        (4, 8, 4),
        (8, None, 2),
    ]
    assert target_duration(spans) == 4


def test_a_short_tail_joins_the_segment_before_and_long_gops_make_long_segments() -> None:
    spans = cut(index([Fraction(s) for s in range(9)], Fraction(81, 10)), Fraction(4))
    assert [s.duration for s in spans] == [4, Fraction(41, 10)]
    gops = cut(index([Fraction(0), Fraction(7), Fraction(14)], Fraction(20)), Fraction(4))
    assert [s.duration for s in gops] == [7, 7, 6]
    assert target_duration(gops) == 7


def test_what_precedes_the_first_keyframe_is_not_counted_and_the_shift_makes_it_non_negative() -> None:
    spans = cut(index([Fraction(0), Fraction(4)], Fraction(8), first_dts=Fraction(-2, 25)), Fraction(4))
    assert [s.duration for s in spans] == [4, 4]
    assert shift(index([Fraction(0)], Fraction(1), first_dts=Fraction(-2, 25))) == Fraction(2, 25)
    assert shift(index([Fraction(1)], Fraction(2), first_dts=Fraction(1))) == 0


@given(
    st.lists(st.integers(1, 8000), min_size=0, max_size=60),
    st.integers(1000, 8000),
    st.integers(0, 9000),
)
def test_segments_cover_the_file_once_in_order(gaps: list[int], target_ms: int, tail_ms: int) -> None:
    times = [Fraction(0)]
    for gap in gaps:
        times.append(times[-1] + Fraction(gap, 1000))
    end = times[-1] + Fraction(tail_ms + 1, 1000)
    target = Fraction(target_ms, 1000)
    spans = cut(index(times, end), target)
    assert spans[0].start is None and spans[-1].end is None
    assert sum(s.duration for s in spans) == end - times[0]  # from the first keyframe on
    for before, after in itertools.pairwise(spans):
        assert before.end == after.start
        assert before.duration >= target - TOLERANCE
    assert all(round(s.duration) <= target_duration(spans) for s in spans)


def test_media_playlist_lists_every_segment_and_m3u8_reads_it() -> None:
    text = playlists.media_playlist(
        [Fraction(4), Fraction(41, 10), Fraction(1, 3)], lambda n: f"{n}.m4s?v=x", "init.mp4?v=x", 4, 7
    )
    parsed = m3u8.loads(text)
    assert parsed.playlist_type == "vod" and parsed.is_endlist and parsed.target_duration == 4
    assert [s.uri for s in parsed.segments] == ["0.m4s?v=x", "1.m4s?v=x", "2.m4s?v=x"]
    assert [s.duration for s in parsed.segments] == [4, 4.1, pytest.approx(1 / 3, abs=1e-6)]
    assert parsed.segments[0].init_section.uri == "init.mp4?v=x"
    assert "#EXT-X-VERSION:7" in text


def test_multivariant_names_each_audio_track_with_its_language() -> None:
    variant = playlists.Variant("main/media.m3u8", "avc1.64001E,mp4a.40.2", 500_000, (320, 240), 25.0)
    audio = [
        playlists.AudioRendition(None, "en", "en", True, 2),
        playlists.AudioRendition("a2/media.m3u8", "fr", "fr", False, 6),
    ]
    parsed = m3u8.loads(playlists.multivariant(variant, audio, 7))
    assert parsed.is_variant
    info = parsed.playlists[0].stream_info
    assert (info.bandwidth, info.resolution, info.codecs, info.audio) == (
        500_000,
        (320, 240),
        "avc1.64001E,mp4a.40.2",
        "audio",
    )
    assert [(m.language, m.default, m.uri) for m in parsed.media] == [
        ("en", "YES", None),
        ("fr", "NO", "a2/media.m3u8"),
    ]
    single = m3u8.loads(playlists.multivariant(variant, audio[:1], 7))
    assert not single.media and single.playlists[0].uri == "main/media.m3u8"


async def test_object_cache_makes_each_object_once_and_drops_the_least_recently_used() -> None:
    cache: ObjectCache[bytes] = ObjectCache(10, len)
    calls: list[str] = []
    gate = asyncio.Event()

    async def make(key: str, size: int) -> bytes:
        calls.append(key)
        await gate.wait()
        return b"x" * size

    waiting = [asyncio.ensure_future(cache.get_or_make("a", lambda: make("a", 4))) for _ in range(5)]
    await asyncio.sleep(0)
    gate.set()
    assert {len(v) for v in await asyncio.gather(*waiting)} == {4} and calls == ["a"]
    await cache.get_or_make("b", lambda: make("b", 4))
    assert cache.get("a") is not None  # a is now the most recently used
    await cache.get_or_make("c", lambda: make("c", 4))  # 12 > 10: b goes
    assert cache.get("b") is None and cache.get("a") is not None and cache.size == 8
    await cache.get_or_make("huge", lambda: make("huge", 11))  # handed out, never kept
    assert cache.get("huge") is None and cache.size == 8


async def test_object_cache_errors_reach_every_waiter_and_nothing_is_kept() -> None:
    cache: ObjectCache[bytes] = ObjectCache(10, len)

    async def fail() -> bytes:
        await asyncio.sleep(0)
        raise ValueError("broken")

    results = await asyncio.gather(*(cache.get_or_make("k", fail) for _ in range(3)), return_exceptions=True)
    assert all(isinstance(r, ValueError) for r in results) and cache.get("k") is None
