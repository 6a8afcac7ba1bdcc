"""Tracks merged by DTS whatever the file's interleaving: the merger alone (sans-I/O) and the
reader on a fragmented MP4 whose fragments hold a second of video, then a second of audio."""

from __future__ import annotations

import itertools
from fractions import Fraction
from pathlib import Path

import av
import pytest
from hypothesis import given
from hypothesis import strategies as st

from media.access_unit import AccessUnit
from media.interleave import DtsMerger
from media.probe import probe
from media.reader import MediaReader
from tests.mediagen_runs import make_fragmented_mp4, make_grouped_mkv

TB = {0: Fraction(1, 90000), 1: Fraction(1, 48000)}


def _au(track: int, seconds: Fraction, size: int = 10) -> AccessUnit:
    dts = int(seconds / TB[track])
    return AccessUnit(
        stream_index=track, pts=dts, dts=dts, keyframe=True, data=b"x" * size, nal_units=(), duration=0
    )


def _lateness(units: list[AccessUnit], time_bases: dict[int, Fraction]) -> Fraction:
    """How far the worst unit is behind a unit handed out before it (DTS, seconds)."""
    worst, latest = Fraction(0), None
    for au in units:
        t = au.dts * time_bases[au.stream_index]
        if latest is not None:
            worst = max(worst, latest - t)
        latest = t if latest is None else max(latest, t)
    return worst


@given(
    st.lists(st.integers(0, 5000), max_size=40),
    st.lists(st.integers(0, 5000), max_size=40),
    st.lists(st.booleans(), max_size=80),
)
def test_any_interleaving_comes_out_in_dts_order(a: list[int], b: list[int], picks: list[bool]) -> None:
    """Within the bounds, every unit comes out once, in DTS order, however the input interleaves."""
    tracks = [
        [_au(0, Fraction(ms, 1000)) for ms in sorted(a)],
        [_au(1, Fraction(ms, 1000)) for ms in sorted(b)],
    ]
    merger = DtsMerger(TB, max_seconds=Fraction(100), max_units=1000)
    out: list[AccessUnit] = []
    choice = iter(picks)
    while tracks[0] or tracks[1]:
        track = tracks[0] if not tracks[1] or (tracks[0] and next(choice, True)) else tracks[1]
        merger.push(track.pop(0))
        while not merger.wants_more() and (au := merger.pop()) is not None:
            out.append(au)
    while (au := merger.pop()) is not None:
        out.append(au)
    assert len(out) == len(a) + len(b)
    assert _lateness(out, TB) == 0
    assert merger.late_units == 0


def test_read_ahead_is_bounded_and_lateness_counted() -> None:
    """A track that has nothing (ended, sparse) does not make the merger hold more than its bounds."""
    merger = DtsMerger(TB, max_seconds=Fraction(2), max_units=1000)
    for i in range(100):
        merger.push(_au(0, Fraction(i, 10)))
        while not merger.wants_more():
            assert merger.pop() is not None
        assert merger.held <= 21
    merger.push(_au(1, Fraction(1)))  # audio far behind what already went out
    while merger.pop() is not None:
        pass
    assert merger.late_units == 1 and merger.worst_lateness > 6
    small = DtsMerger(TB, max_units=5)
    for i in range(5):
        small.push(_au(0, Fraction(i, 100)))
    assert not small.wants_more()
    by_bytes = DtsMerger(TB, max_bytes=100)
    by_bytes.push(_au(0, Fraction(0), size=200))
    assert not by_bytes.wants_more()


def test_fragmented_mp4_tracks_come_out_in_dts_order(tmp_path: Path) -> None:
    path = make_fragmented_mp4(tmp_path / "frag.mp4", seconds=5, run_seconds=1)
    with av.open(str(path)) as container:
        file_order = [p.stream.index for p in container.demux() if p.size]
    runs = sum(1 for a, b in itertools.pairwise(file_order) if a != b)
    assert runs <= 12  # the file really holds long per-track runs
    info = probe(path)
    time_bases = {t.index: t.time_base for t in info.tracks}
    with MediaReader(path, info, list(time_bases)) as reader:
        units = []
        while (au := reader.read()) is not None:
            units.append(au)
    assert sorted(u.stream_index for u in units) == sorted(file_order)
    assert _lateness(units, time_bases) < Fraction(1, 20), float(_lateness(units, time_bases))


@pytest.fixture(scope="module")
def long_runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Runs of 10 s per track: longer than the read-ahead bound (8 s)."""
    path = tmp_path_factory.mktemp("runs") / "runs.mkv"
    make_grouped_mkv(path, seconds=25, run_seconds=10, size=(64, 48))
    with av.open(str(path)) as container:
        order = [p.stream.index for p in container.demux() if p.size]
    assert sum(1 for a, b in itertools.pairwise(order) if a != b) <= 12  # a few long runs
    return path


def _per_track(units: list[AccessUnit]) -> dict[int, list[int]]:
    out: dict[int, list[int]] = {}
    for au in units:
        out.setdefault(au.stream_index, []).append(au.dts)
    return out


def test_runs_longer_than_the_bound_are_read_with_a_second_demuxer(long_runs: Path) -> None:
    info = probe(long_runs)
    time_bases = {t.index: t.time_base for t in info.tracks}
    with MediaReader(long_runs, info, list(time_bases)) as reader:
        units = []
        while (au := reader.read()) is not None:
            units.append(au)
    with MediaReader(long_runs, info, [0]) as video, MediaReader(long_runs, info, [1]) as audio:
        alone = {0: [], 1: []}
        for index, single in ((0, video), (1, audio)):
            while (au := single.read()) is not None:
                alone[index].append(au.dts)
    assert _per_track(units) == alone  # every unit once, as each track's own reader gives it
    assert _lateness(units, time_bases) < Fraction(1, 20), float(_lateness(units, time_bases))


def test_seek_in_a_file_of_long_runs(long_runs: Path) -> None:
    info = probe(long_runs)
    time_bases = {t.index: t.time_base for t in info.tracks}
    with MediaReader(long_runs, info, list(time_bases)) as reader:
        for target in (Fraction(12), Fraction(3), Fraction(21)):
            start = reader.seek(target)
            units = reader.read_batch(start + 6, 100_000)
            assert units[0].stream_index == 0 and units[0].keyframe
            assert _lateness(units, time_bases) < Fraction(1, 20), (
                target,
                float(_lateness(units, time_bases)),
            )
            per_track = _per_track(units)
            assert all(a < b for dts in per_track.values() for a, b in itertools.pairwise(dts))
            audio = [au.pts * time_bases[1] for au in units if au.stream_index == 1]
            assert (
                audio and abs(audio[0] - start) < Fraction(1, 10) and audio[-1] > min(start + 5, Fraction(24))
            )
