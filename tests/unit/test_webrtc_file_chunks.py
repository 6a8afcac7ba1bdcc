"""Files converted for WebRTC in chunks: the plan, a viewer's reader over chunks, the shared cache
(one conversion per chunk however many viewers wait, bounded in bytes), and the conversion itself
on small generated files (every picture once, Opus continuous across chunks, a truncated file)."""

from __future__ import annotations

import asyncio
import logging
import threading
from fractions import Fraction
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from media import keyframe_index
from media.access_unit import AccessUnit
from media.errors import MediaError
from media.keyframe_index import CutPoint, KeyframeIndex
from media.probe import probe
from media.track import MediaInfo
from streamd.webrtc.chunk_cache import ChunkCollector, FileChunks
from streamd.webrtc.chunk_convert import OPUS_FRAME, ChunkJob, Emit, convert
from streamd.webrtc.file_chunks import UNIT_OVERHEAD, Chunk, ChunkPlan, ChunkReader, plan
from tests.mediagen import make_h264_aac_mp4, make_truncated

TB = Fraction(1, 1000)
TIME_BASES = {0: TB, 1: TB}


def _index(keyframes: list[int], end: int) -> KeyframeIndex:
    """Keyframes at these milliseconds (ticks are ms too)."""
    points = tuple(CutPoint(ms, Fraction(ms, 1000)) for ms in keyframes)
    return KeyframeIndex(0, "pts", points, Fraction(0), Fraction(end, 1000), TB)


def test_plan_cuts_at_keyframes_at_least_the_target_apart() -> None:
    chunks = plan(_index([0, 1000, 2000, 3000, 4500, 5000, 7000], 8000), Fraction(2))
    assert [p and p.ticks for p in chunks.starts] == [None, 2000, 4500, 7000]
    assert chunks.end(0) == CutPoint(2000, Fraction(2)) and chunks.end(3) is None
    assert [chunks.chunk_at(Fraction(s)) for s in (0, Fraction(1999, 1000), 2, 4, 5, 100)] == [
        0,
        0,
        1,
        1,
        2,
        3,
    ]


def _video(ms: int, keyframe: bool = False) -> AccessUnit:
    return AccessUnit(0, ms, ms, keyframe, b"v%d" % ms)


def _audio(ms: int) -> AccessUnit:
    return AccessUnit(1, ms, ms, True, b"a%d" % ms)


def _chunk(n: int, first: int, last: int, final: bool = False, keyframes: tuple[int, ...] = ()) -> Chunk:
    """Video every 40 ms and audio every 20 ms from ``first`` to ``last`` ms; IDRs at ``keyframes``."""
    keys = keyframes or (first,)
    units = []
    for ms in range(first, last, 20):
        if ms % 40 == first % 40:
            units.append(_video(ms, ms in keys))
        units.append(_audio(ms))
    chunk = Chunk(n)
    chunk.add(units, [Fraction(k, 1000) for k in keys])
    chunk.finish(final)
    return chunk


TWO = ChunkPlan(0, "pts", (None, CutPoint(2000, Fraction(2))))


def _drain(reader: ChunkReader) -> list[AccessUnit]:
    out = []
    while (au := reader.read()) is not None:
        out.append(au)
    return out


def test_reader_walks_chunk_after_chunk_and_says_which_it_lacks() -> None:
    reader = ChunkReader(TWO, TIME_BASES)
    assert reader.read() is None and reader.waiting_for == 0
    reader.give(0, _chunk(0, 0, 2000))
    assert reader.next_wanted() == 1
    first = _drain(reader)
    assert len(first) == 150 and reader.waiting_for == 1
    reader.give(1, _chunk(1, 2000, 3000, final=True))
    rest = _drain(reader)
    assert rest[0].pts == 2000 and len(rest) == 75
    assert reader.waiting_for is None and reader.read() is None  # the end
    assert reader.next_wanted() is None


def test_a_seek_lands_on_the_last_keyframe_of_a_held_chunk_else_its_start() -> None:
    reader = ChunkReader(TWO, TIME_BASES)
    assert reader.seek(Fraction(5, 2)) == 2  # not held: the chunk's start
    assert reader.read() is None and reader.waiting_for == 1
    reader.give(1, _chunk(1, 2000, 4000, final=True, keyframes=(2000, 3000)))
    assert reader.seek(Fraction(37, 10)) == 3
    units = _drain(reader)
    assert units[0] == _video(3000, True) and all(u.pts >= 3000 for u in units)
    assert reader.seek(Fraction(29, 10)) == 2  # before the second keyframe: the first
    assert _drain(reader)[0].pts == 2000


def test_a_final_chunk_ends_the_file_early() -> None:
    reader = ChunkReader(TWO, TIME_BASES)
    reader.give(0, _chunk(0, 0, 1000, final=True))  # damaged after it
    assert len(_drain(reader)) == 75 and reader.waiting_for is None and reader.next_wanted() is None


def test_reader_holds_a_few_chunks_only() -> None:
    many = ChunkPlan(0, "pts", (None, *(CutPoint(t, Fraction(t, 1000)) for t in range(2000, 20000, 2000))))
    reader = ChunkReader(many, TIME_BASES)
    for n in range(10):
        reader.give(n, _chunk(n, n * 2000, n * 2000 + 100))
    assert (
        sum(reader.held(n) is not None for n in range(10)) <= ChunkReader.KEEP
        and reader.held(0)
        and reader.held(1)
    )


# --- the shared cache: one conversion per chunk -------------------------------------------------------

JOB = ChunkJob(Path("/media/film.mp4"), MediaInfo("film.mp4", "mp4", None, 1, 1, ()), ((0, "h264"),))


class FakeConverter:
    """Counts conversions; holds each until ``go`` is set (many viewers ask meanwhile)."""

    def __init__(self, size: int = 100, fail: bool = False) -> None:
        self.calls: list[int] = []
        self.go = threading.Event()
        self.size, self.fail = size, fail

    def __call__(self, job: ChunkJob, chunks: ChunkPlan, n: int, emit: Emit) -> bool:
        self.calls.append(n)
        emit([AccessUnit(0, 0, 0, True, b"x" * (self.size - UNIT_OVERHEAD))], [Fraction(0)])
        self.go.wait(10)
        if self.fail:
            raise ValueError("damaged")
        return False


def test_viewers_asking_together_share_one_conversion_then_the_cache() -> None:
    fake = FakeConverter()
    chunks = FileChunks(1000, workers=2, converter=fake)

    async def run() -> None:
        got = [chunks.chunk(JOB, TWO, 0) for _ in range(5)]
        assert all(c is got[0] for c in got) and not got[0].complete  # one conversion, going on
        await chunks.grown(got[0], 0)
        assert len(got[0].units) == 1  # what is converted so far is there to read
        fake.go.set()
        await chunks.grown(got[0], 1)
        assert got[0].complete and not got[0].final
        assert chunks.chunk(JOB, TWO, 0) is got[0]  # cached
        other = ChunkJob(JOB.path, JOB.source, ((0, "copy"),))  # another target: another chunk
        second = chunks.chunk(other, TWO, 0)
        assert second is not got[0]
        await chunks.grown(second, 1)

    asyncio.run(run())
    assert fake.calls == [0, 0] and chunks.converted == 2 and chunks.requests == 7 and chunks.hits == 1
    metrics = {m.name: m.samples[0].value for m in ChunkCollector(chunks).collect()}
    assert metrics["streamd_webrtc_file_chunks_converted"] == 2
    assert metrics["streamd_webrtc_file_chunk_cache_hits"] == 1
    assert metrics["streamd_webrtc_file_chunk_cache_bytes"] == 200
    chunks.close()


def test_cache_is_bounded_in_bytes_least_recently_used_out() -> None:
    fake = FakeConverter(size=100)
    fake.go.set()
    chunks = FileChunks(250, converter=fake)

    async def run() -> None:
        for n in (0, 1, 0, 2, 0, 1):  # 0 stays in use; 1 is the oldest when 2 comes
            await chunks.grown(chunks.chunk(JOB, TWO, n), 1)

    asyncio.run(run())
    assert fake.calls == [0, 1, 2, 1] and chunks.chunks.size <= 250
    chunks.close()


def test_a_failed_conversion_reaches_every_waiter_and_is_not_kept() -> None:
    fake = FakeConverter(fail=True)
    chunks = FileChunks(1000, converter=fake)

    async def run() -> None:
        got = [chunks.chunk(JOB, TWO, 0) for _ in range(3)]
        fake.go.set()
        await chunks.grown(got[0], 1)
        assert all(c is got[0] for c in got) and isinstance(got[0].error, ValueError)
        reader = ChunkReader(TWO, TIME_BASES)
        reader.give(0, got[0])
        assert reader.read() is not None  # what was made before the failure
        with pytest.raises(MediaError, match="damaged"):
            reader.read()
        again = chunks.chunk(JOB, TWO, 0)  # not kept: converted anew
        await chunks.grown(again, 1)

    asyncio.run(run())
    assert fake.calls == [0, 0] and len(chunks.chunks) == 0
    chunks.close()


# --- converting real (tiny) files --------------------------------------------------------------------


@pytest.fixture(scope="module")
def bframes_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("chunks")
    return make_h264_aac_mp4(folder / "b.mp4", seconds=3, bframes=True, faststart=True, gop=12)


def _all_chunks(path: Path, tracks: tuple[tuple[int, str], ...]) -> list[Chunk]:
    job = ChunkJob(path, probe(path), tracks)
    chunks = plan(keyframe_index.build(path, [0]))
    out = []
    for n in range(len(chunks)):
        chunk = Chunk(n)
        chunk.finish(convert(job, chunks, n, chunk.add))
        out.append(chunk)
        if chunk.final:
            break
    return out


def test_every_picture_is_converted_by_exactly_one_chunk(bframes_file: Path) -> None:
    chunks = _all_chunks(bframes_file, ((0, "h264"), (1, "opus")))
    assert len(chunks) >= 2 and chunks[-1].final and not chunks[0].final
    video = [[u for u in c.units if u.stream_index == 0] for c in chunks]
    assert all(v[0].keyframe for v in video)  # each chunk starts with an IDR
    stamps = [u.pts for v in video for u in v]
    assert len(stamps) == 75 and stamps == sorted(set(stamps))  # 3 s at 25 fps, in order, once
    assert all(
        Fraction(u.pts, 12800) in c.starts
        for c, v in zip(chunks, video, strict=True)
        for u in v
        if u.keyframe
    )


def test_opus_frames_continue_across_chunks_on_the_20_ms_grid(bframes_file: Path) -> None:
    chunks = _all_chunks(bframes_file, ((0, "h264"), (1, "opus")))
    frames = [u.pts for c in chunks for u in c.units if u.stream_index == 1]
    assert frames[0] == 0 and frames == list(range(0, len(frames) * OPUS_FRAME, OPUS_FRAME))
    assert abs(len(frames) - 150) <= 2  # 3 s


def test_tracks_browsers_take_are_copied_as_they_are(bframes_file: Path) -> None:
    from media.reader import MediaReader

    info = probe(bframes_file)
    reader = MediaReader(bframes_file, info, [0])
    source = []
    while (au := reader.read()) is not None:
        source.append(au.data)
    reader.close()
    chunks = _all_chunks(bframes_file, ((0, "copy"), (1, "opus")))
    copied = [u.data for c in chunks for u in c.units if u.stream_index == 0]
    assert sorted(copied) == sorted(source)


def test_a_truncated_file_ends_with_a_final_chunk_and_a_log_line(
    bframes_file: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    broken = make_truncated(bframes_file, tmp_path / "cut.mp4", 0.6)
    with caplog.at_level(logging.WARNING):
        chunks = _all_chunks(broken, ((0, "h264"), (1, "opus")))
    assert chunks[-1].final
    pictures = sum(u.stream_index == 0 for c in chunks for u in c.units)
    assert 0 < pictures < 75
    assert "cannot read on" in caplog.text


def test_a_growing_chunk_is_read_as_far_as_it_goes() -> None:
    reader = ChunkReader(TWO, TIME_BASES)
    chunk = Chunk(0)
    reader.give(0, chunk)
    assert reader.read() is None and (reader.waiting_for, reader.waiting_at) == (0, 0)
    chunk.add([_video(0, True), _audio(0)], [Fraction(0)])
    assert len(_drain(reader)) == 2 and (reader.waiting_for, reader.waiting_at) == (0, 2)
    assert reader.next_wanted() is None  # the next chunk is asked for once this one is done
    chunk.add([_audio(20)], [])
    chunk.finish(False)
    assert _drain(reader) == [_audio(20)] and reader.waiting_for == 1 and reader.next_wanted() is None


def test_a_seek_waits_for_a_keyframe_past_its_target_and_a_lead_of_media() -> None:
    chunks = FileChunks(1000, converter=FakeConverter())

    async def run() -> None:
        chunk = Chunk(0)
        reached = asyncio.ensure_future(chunks.reached(chunk, Fraction(1)))
        ahead = asyncio.ensure_future(chunks.ahead(chunk, None, Fraction(1), TIME_BASES))
        chunk.add([_video(0, True), _video(500)], [Fraction(0)])
        await asyncio.sleep(0)
        assert not reached.done() and not ahead.done()
        chunk.add([_video(1000), _video(1500, True)], [Fraction(3, 2)])
        await asyncio.wait_for(asyncio.gather(reached, ahead), 5)
        growing = Chunk(1)
        waiting = asyncio.ensure_future(chunks.ahead(growing, Fraction(5), Fraction(1), TIME_BASES))
        growing.finish(True)  # complete: nothing more to wait for
        await asyncio.wait_for(waiting, 5)

    asyncio.run(run())
    chunks.close()


@given(
    st.lists(st.integers(1, 30), min_size=1, max_size=6),  # units per chunk
    st.lists(st.integers(1, 7), min_size=1, max_size=20),  # batch sizes the conversion hands out
)
def test_reading_growing_chunks_gives_every_unit_once_in_order(sizes: list[int], batches: list[int]) -> None:
    """However the chunks grow while read, a viewer reads every unit once, in order, then the end."""
    units = [_audio(20 * i) for i in range(sum(sizes))]
    starts = [
        None,
        *(CutPoint(20 * sum(sizes[:k]), Fraction(20 * sum(sizes[:k]), 1000)) for k in range(1, len(sizes))),
    ]
    reader = ChunkReader(ChunkPlan(1, "pts", tuple(starts)), TIME_BASES)
    read: list[AccessUnit] = []
    at = 0
    for n, size in enumerate(sizes):
        chunk = Chunk(n)
        reader.give(n, chunk)
        mine = units[at : at + size]
        at += size
        step = 0
        while mine:
            batch, mine = mine[: batches[step % len(batches)]], mine[batches[step % len(batches)] :]
            step += 1
            chunk.add(batch, [])
            read += _drain(reader)
            assert reader.waiting_for == n
        chunk.finish(n == len(sizes) - 1)
        read += _drain(reader)
    assert read == units and reader.waiting_for is None


def test_the_cache_size_setting_is_checked() -> None:
    from streamd.config import ConfigError, ServerConfig

    assert ServerConfig().webrtc_file_cache_bytes == 256 * 1024 * 1024
    for bad in (-1, 1.5, True):
        with pytest.raises(ConfigError, match="webrtc_file_cache_bytes"):
            ServerConfig(webrtc_file_cache_bytes=bad)  # type: ignore[arg-type]


def test_closing_stops_a_conversion_at_its_next_picture() -> None:
    class Endless:
        def __init__(self) -> None:
            self.pictures = 0

        def __call__(self, job: ChunkJob, chunks: ChunkPlan, n: int, emit: Emit) -> bool:
            while True:  # a long chunk, picture after picture
                emit([_video(self.pictures)], [])
                self.pictures += 1

    endless = Endless()
    chunks = FileChunks(1000, converter=endless)

    async def run() -> None:
        chunk = chunks.chunk(JOB, TWO, 0)
        await chunks.grown(chunk, 0)
        chunks.close()
        await chunks.grown(chunk, 10**9)  # until it ends
        assert chunk.complete and chunk.error is not None

    asyncio.run(run())
