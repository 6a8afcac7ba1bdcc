"""The in-memory unit cache gives exactly what MediaReader gives: same units, seeks and loops."""

from __future__ import annotations

import itertools
from fractions import Fraction
from pathlib import Path

import pytest

from media.probe import probe
from media.reader import MediaReader
from media.unit_cache import CachedReader, UnitCache
from tests import mediagen


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("cache") / "clip.mp4"
    mediagen.make_h264_aac_mp4(path, seconds=3, bframes=True)
    return path


def all_units(reader, limit: int = 10_000) -> list:
    out = []
    while len(out) < limit and (au := reader.read()) is not None:
        out.append(au)
    return out


def cached(clip: Path, indices: list[int], loop: bool = False) -> CachedReader:
    info = probe(clip)
    cache = UnitCache()
    every = frozenset(t.index for t in info.tracks)
    cache.load(clip, info, every)
    media = cache.get(clip, info, every)
    assert media is not None and cache.size > 0
    return CachedReader(media, indices, loop=loop)


@pytest.mark.parametrize("indices", [[0, 1], [0], [1]])
def test_same_units_as_the_reader(clip: Path, indices: list[int]) -> None:
    with MediaReader(clip, probe(clip), indices) as reader:
        expected = all_units(reader)
    assert all_units(cached(clip, indices)) == expected


@pytest.mark.parametrize("target", [Fraction(0), Fraction(1, 2), Fraction(1), Fraction(21, 10)])
def test_seeks_land_where_the_reader_lands(clip: Path, target: Fraction) -> None:
    info = probe(clip)
    with MediaReader(clip, info, [0, 1]) as reader:
        expected_time = reader.seek(target)
        expected = [au for au in all_units(reader) if au.stream_index == 0]
    c = cached(clip, [0, 1])
    assert c.seek(target) == expected_time
    got = [au for au in all_units(c) if au.stream_index == 0]
    assert got == expected  # the same video from the same keyframe on
    assert got[0].keyframe


def test_loop_keeps_timestamps_increasing(clip: Path) -> None:
    c = cached(clip, [1], loop=True)
    units = all_units(c, limit=3 * 150)
    pts = [au.pts for au in units]
    assert all(b > a for a, b in itertools.pairwise(pts))
    assert pts[-1] > 2 * 3 * 48000  # well into the third pass


def test_budget_evicts_least_recently_used(clip: Path, tmp_path: Path) -> None:
    info = probe(clip)
    every = frozenset(t.index for t in info.tracks)
    cache = UnitCache(budget_bytes=1)
    cache.load(clip, info, every)
    assert cache.get(clip, info, every) is not None  # the newest entry always stays
    other = tmp_path / "other.mp4"
    mediagen.make_h264_aac_mp4(other, seconds=1)
    other_info = probe(other)
    cache.load(other, other_info, frozenset(t.index for t in other_info.tracks))
    assert cache.get(clip, info, every) is None
    assert not cache.wanted(other, other_info, frozenset(t.index for t in other_info.tracks))


@pytest.mark.parametrize("taken", [1, 7, 40])
def test_a_reader_moves_over_to_the_cache_without_a_gap_or_a_repeat(clip: Path, taken: int) -> None:
    """A session that began before the file was cached continues in the cache where it stood."""
    info = probe(clip)
    with MediaReader(clip, info, [0, 1]) as reader:
        expected = all_units(reader)
    with MediaReader(clip, info, [0, 1]) as reader:
        first = all_units(reader, limit=taken)
    upto: dict[int, int] = {}
    for au in first:
        upto[au.stream_index] = au.dts
    c = cached(clip, [0, 1])
    if set(upto) != {0, 1}:
        assert not c.resume_after(upto)  # a track not read yet: no safe place to continue
        return
    assert c.resume_after(upto)
    rest = all_units(c)
    assert sorted(first + rest, key=lambda au: (au.stream_index, au.dts)) == sorted(
        expected, key=lambda au: (au.stream_index, au.dts)
    )
    assert len(first) + len(rest) == len(expected)


def test_moving_over_is_refused_for_a_dts_the_cache_does_not_have(clip: Path) -> None:
    assert not cached(clip, [0, 1]).resume_after({0: 10**9, 1: 0})
