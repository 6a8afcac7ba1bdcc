"""Tracks merged by DTS whatever the file's interleaving: the merger alone (sans-I/O) and the
reader on a fragmented MP4 whose fragments hold a second of video, then a second of audio."""

from __future__ import annotations

import itertools
from fractions import Fraction
from pathlib import Path

import av
from hypothesis import given
from hypothesis import strategies as st

from media.access_unit import AccessUnit
from media.interleave import DtsMerger
from media.probe import probe
from media.reader import MediaReader
from tests.mediagen_fragmented import make_fragmented_mp4

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
    assert merger.late_units == 1 and merger.worst_lateness > Fraction(6)
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
