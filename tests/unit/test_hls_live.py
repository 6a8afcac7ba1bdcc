"""Live HLS without sockets: a live path's units (as RTP delivers them: PTS only, decode order) cut
into CMAF parts and segments, the playlist every player reads, and the delivery directives."""

from __future__ import annotations

import io
import itertools
import shutil
from pathlib import Path

import av
import m3u8
import pytest
from hypothesis import given
from hypothesis import strategies as st

from media.access_unit import AccessUnit
from streamd.hls.live_directives import (
    Decision,
    DirectiveError,
    Directives,
    advance_part_limit,
    decide,
    parse,
)
from streamd.hls.live_fmp4 import Sample
from streamd.hls.live_playlist import LiveNames, render
from streamd.hls.live_recorded import read_back
from streamd.hls.live_segmenter import LiveSegmenter, Part, SegmenterSettings
from streamd.hls.live_stream import LiveStream
from streamd.live.hub import LivePath
from tests.mediagen import make_audio, make_h264_aac_mp4
from tests.unit.test_recorder import as_live, comparable, file_units, hevc_source, record

WALL = 1_800_000_000.0  # the publisher's clock at tick 0


def feed(
    live: LivePath, units: list[AccessUnit], settings: SegmenterSettings
) -> tuple[LiveStream, list[Part]]:
    parts: list[Part] = []
    stream = LiveStream(live, settings, wall=lambda: WALL, on_parts=parts.extend)
    for track in live.tracks.values():
        track.sender_ntp, track.sender_ts = WALL, 0  # a sender report for every track
    stream.attach()
    for au in units:
        live.push_unit(au.stream_index, au)
    return stream, parts


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_h264_aac_mp4(tmp_path_factory.mktemp("hls") / "src.mp4", seconds=4, gop=12, fps=25)


def test_segments_hold_every_unit_bit_exact(source: Path) -> None:
    live, units = as_live(source)
    stream, parts = feed(live, units, SegmenterSettings(segment_seconds=1.0, part_seconds=0.2))
    stream.finish()
    segmenter = stream.segmenter
    assert stream.init is not None and segmenter.ended
    segments = list(segmenter.segments)
    assert [s.msn for s in segments] == list(range(len(segments))) and len(segments) >= 3
    # every part a fragment of its segment, in order; the parts of a segment are its bytes
    for segment in segments:
        assert b"".join(bytes(p.data) for p in segment.parts) == segment.data
        assert segment.parts[0].independent
        assert abs(sum(p.duration for p in segment.parts) - segment.duration) < 1e-6
        for part in segment.parts:
            assert part.duration <= segmenter.part_target + 0.002  # type: ignore[operator]
        for part in segment.parts[:-1]:
            assert part.duration >= 0.85 * segmenter.part_target  # type: ignore[operator]
    assert len(parts) == sum(len(s.parts) for s in segments)
    # init + segments is an MP4 that holds the published units exactly
    whole = Path(source.parent / "live.mp4")
    whole.write_bytes(stream.init + b"".join(s.data for s in segments))
    got = [n for au in file_units(whole, "video") for n in au.nal_units]
    want = [n for au in file_units(source, "video") for n in au.nal_units]
    assert comparable(got, "h264") == comparable(want, "h264")
    got_audio = [au.data for au in file_units(whole, "audio")]
    want_audio = [au.data for au in file_units(source, "audio")]
    assert got_audio and got_audio == want_audio[-len(got_audio) :]  # audio from the first keyframe on
    assert len(want_audio) - len(got_audio) <= 2
    with av.open(io.BytesIO(stream.init + segments[1].data)) as container:  # a segment plays on its own
        frames = list(container.decode(video=0))
        assert frames and frames[0].key_frame


def test_timestamps_follow_the_publisher_and_audio_lines_up(source: Path) -> None:
    live, units = as_live(source)
    stream, _ = feed(live, units, SegmenterSettings())
    stream.finish()
    segments = list(stream.segmenter.segments)
    # program date and time: tick 0 is WALL on the publisher's clock; segment starts are keyframe PTS
    first_video = next(au for au in units if au.stream_index == 0)
    assert segments[0].wall == pytest.approx(WALL + first_video.pts / 90000, abs=1e-6)
    for a, b in itertools.pairwise(segments):
        assert b.wall == pytest.approx(a.wall + a.duration, abs=0.05)  # type: ignore[operator]
    path = source.parent / "aligned.mp4"
    path.write_bytes(stream.init + b"".join(s.data for s in segments))  # type: ignore[operator]
    with av.open(str(path)) as container:
        video, audio = container.streams.video[0], container.streams.audio[0]
        v = next(p for p in container.demux(video) if p.pts is not None)
        container.seek(0)
        a = next(p for p in container.demux(audio) if p.pts is not None)
        assert abs(float(v.pts * v.time_base) - float(a.pts * a.time_base)) < 0.05


def test_playlist_low_latency_tags_and_plain_segments(source: Path) -> None:
    live, units = as_live(source)
    cut = len(units) * 3 // 4
    stream, _ = feed(live, units[:cut], SegmenterSettings(segment_seconds=1.0, dvr_seconds=60))
    segmenter = stream.segmenter
    for au in units[cut:]:  # stop where the open segment has parts already
        if segmenter.next_part[1] > 1:
            break
        live.push_unit(au.stream_index, au)
    names = LiveNames("0a1b2c3d")
    text = render(segmenter, names)
    playlist = m3u8.loads(text)
    assert playlist.target_duration == segmenter.target_duration == 1
    assert playlist.server_control.can_block_reload == "YES"
    assert playlist.server_control.part_hold_back == pytest.approx(3 * segmenter.part_target, abs=1e-4)
    assert playlist.server_control.can_skip_until == 6 * segmenter.target_duration
    assert playlist.part_inf.part_target == pytest.approx(segmenter.part_target)
    assert playlist.media_sequence == 0 and not playlist.is_endlist
    assert playlist.segments[0].init_section.uri == "0a1b2c3d-init.mp4"
    complete = [s for s in playlist.segments if s.uri]
    assert [s.uri for s in complete] == [f"0a1b2c3d-{n}.m4s" for n in range(segmenter.last_complete + 1)]
    assert all(s.program_date_time is not None for s in complete)
    assert playlist.preload_hint.uri == f"0a1b2c3d-part{segmenter.parts_made}.m4s"
    trailing = playlist.segments[-1].parts  # the open segment's parts, after the last complete one
    assert segmenter.open is not None and len(segmenter.open.parts) > 1
    assert [p.uri for p in trailing] == [f"0a1b2c3d-part{p.number}.m4s" for p in segmenter.open.parts]
    numbers = [p.number for s in segmenter.segments for p in s.parts] + [
        p.number for p in segmenter.open.parts
    ]
    assert numbers == list(range(segmenter.parts_made))
    assert "INDEPENDENT=YES" in text
    stream.finish()
    ended = m3u8.loads(render(segmenter, names, skip=True))
    assert ended.is_endlist and ended.preload_hint is None and not ended.skip


def test_dvr_window_is_bounded_but_never_below_three_target_durations() -> None:
    by_time = synthetic(SegmenterSettings(segment_seconds=1.0, dvr_seconds=10), 30)
    assert [s.msn for s in by_time.segments] == list(range(19, 29))  # 10 s of 1 s segments
    by_bytes = synthetic(SegmenterSettings(segment_seconds=1.0, dvr_bytes=1), 30)
    assert [s.msn for s in by_bytes.segments] == [26, 27, 28]  # three target durations stay
    assert by_bytes.bytes == sum(len(s.data) for s in by_bytes.segments)
    assert by_bytes.segment(25) is None and by_bytes.part(25, 0) is None
    assert by_bytes.has_part(25, 0)  # long since there: a blocking request for it is answered


def synthetic(settings: SegmenterSettings, seconds: float) -> LiveSegmenter:
    """25 fps video with a keyframe each second, no audio: 40 ms samples."""
    segmenter = LiveSegmenter([90000], 0, settings)
    for n in range(int(seconds * 25) + 1):
        segmenter.push(0, Sample(n * 3600, 0, 0, b"x" * 10, n % 25 == 0), wall=WALL + n / 25)
    return segmenter


def test_skip_boundary_is_six_target_durations() -> None:
    segmenter = synthetic(SegmenterSettings(segment_seconds=1.0, part_seconds=0.2), 20)
    assert segmenter.last_complete == 18 and segmenter.target_duration == 1
    delta = m3u8.loads(render(segmenter, LiveNames("00000000"), skip=True))
    assert delta.skip.skipped_segments == 12  # segments ending more than 6 s before the end (19 s)
    assert delta.media_sequence == 0
    assert next(s.uri for s in delta.segments if s.uri) == "00000000-12.m4s"


def test_part_target_is_whole_frames() -> None:
    segmenter = LiveSegmenter([90000], 0, SegmenterSettings(part_seconds=0.2))
    for n in range(60):  # 24 fps: 0.2 s is 4.8 frames; parts of 5 frames
        segmenter.push(0, Sample(n * 3750, 0, 0, b"x", n % 24 == 0))
    assert segmenter.part_target == pytest.approx(5 / 24, abs=1e-6)


@given(st.dictionaries(st.sampled_from(["_HLS_msn", "_HLS_part", "_HLS_skip", "x"]), st.text(max_size=30)))
def test_directives_parse_or_refuse_cleanly(query: dict[str, str]) -> None:
    try:
        directives = parse(query)
    except DirectiveError:
        return
    assert directives.msn is None or directives.msn >= 0
    assert directives.part is None or directives.msn is not None


@pytest.mark.parametrize(
    "query",
    [
        {"_HLS_part": "1"},
        {"_HLS_msn": "-1"},
        {"_HLS_msn": "1.5"},
        {"_HLS_msn": "9" * 30},
        {"_HLS_skip": "NO"},
    ],
)
def test_malformed_directives(query: dict[str, str]) -> None:
    with pytest.raises(DirectiveError):
        parse(query)


def test_blocking_decisions() -> None:
    segmenter = synthetic(SegmenterSettings(segment_seconds=1.0, part_seconds=0.2), 3.5)
    last = segmenter.last_complete
    msn, index = segmenter.next_part
    assert (last, msn) == (2, 3) and index >= 1
    assert decide(segmenter, Directives()) is Decision.READY
    assert decide(segmenter, Directives(msn=last)) is Decision.READY
    assert decide(segmenter, Directives(msn=msn)) is Decision.WAIT  # the open segment: not complete
    assert decide(segmenter, Directives(msn=last + 3)) is Decision.TOO_FAR
    assert decide(segmenter, Directives(msn=msn, part=index - 1)) is Decision.READY
    assert decide(segmenter, Directives(msn=msn, part=index)) is Decision.WAIT
    limit = advance_part_limit(segmenter.part_target)  # type: ignore[arg-type]
    assert limit == 15
    assert decide(segmenter, Directives(msn=msn, part=index + limit)) is Decision.TOO_FAR
    assert decide(segmenter, Directives(msn=msn + 1, part=0)) is Decision.WAIT
    # a part index past a complete segment's last part is part 0 of the next one
    assert decide(segmenter, Directives(msn=last - 1, part=99)) is Decision.READY
    assert decide(segmenter, Directives(msn=last, part=99)) is Decision.READY  # part 0 of the open one
    segmenter.finish()
    assert decide(segmenter, Directives(msn=last + 2, part=3)) is Decision.READY  # ENDLIST: ignored


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg (libx265)")
def test_hevc_with_b_frames_bit_exact(tmp_path: Path) -> None:
    source = hevc_source(tmp_path / "src.mp4", open_gop=False)
    live, units = as_live(source)
    stream, _ = feed(live, units, SegmenterSettings(segment_seconds=1.0, part_seconds=0.2))
    stream.finish()
    segments = list(stream.segmenter.segments)
    assert stream.init is not None and len(segments) == 3
    whole = tmp_path / "live.mp4"
    whole.write_bytes(stream.init + b"".join(s.data for s in segments))
    got = [n for au in file_units(whole, "video") for n in au.nal_units]
    want = [n for au in file_units(source, "video") for n in au.nal_units]
    assert comparable(got, "hevc") == comparable(want, "hevc")
    with av.open(str(whole)) as container:  # B-frames: decode times rebuilt, every picture decodes
        assert sum(1 for _ in container.decode(video=0)) == len(file_units(source, "video"))


def test_opus_audio_only_path(tmp_path: Path) -> None:
    source = make_audio(tmp_path / "src.mka", "libopus", seconds=3.5)
    live, units = as_live(source)
    stream, _ = feed(live, units, SegmenterSettings(segment_seconds=1.0, part_seconds=0.2))
    stream.finish()
    segmenter = stream.segmenter
    assert segmenter.part_target == pytest.approx(0.2)  # 10 Opus frames of 20 ms
    assert [round(s.duration, 2) for s in segmenter.segments][:3] == [1.0, 1.0, 1.0]  # cut at any frame
    whole = tmp_path / "live.mp4"
    whole.write_bytes(stream.init + b"".join(s.data for s in segmenter.segments))  # type: ignore[operator]
    assert [au.data for au in file_units(whole, "audio")] == [au.data for au in units]
    assert m3u8.loads(render(segmenter, LiveNames("00000000"))).is_endlist


def test_recorded_path_reads_old_segments_back_from_its_recording(tmp_path: Path) -> None:
    """Segments that left memory stay listed (cold) and come back from the recorder's files with
    the same samples on the same timeline."""
    source = make_h264_aac_mp4(tmp_path / "src.mp4", seconds=6, gop=25, bframes=True)
    live, units = as_live(source)
    for track in live.tracks.values():
        track.sender_ntp, track.sender_ts = WALL, 0
    short = LiveStream(live, SegmenterSettings(dvr_seconds=1.0, recorded_seconds=60.0), wall=lambda: WALL)
    whole = LiveStream(live, SegmenterSettings(), wall=lambda: WALL)
    short.attach()
    whole.attach()
    recorder = record(live, units, tmp_path / "rec", "mp4", 2)
    assert len(recorder.files) >= 2
    for stream in (short, whole):
        stream.finish()
    cold = [s for s in short.segmenter.segments if s.cold]
    assert cold and [s.msn for s in short.segmenter.segments] == [s.msn for s in whole.segmenter.segments]
    assert short.segmenter.bytes < whole.segmenter.bytes
    listed = m3u8.loads(render(short.segmenter, LiveNames("00000000")))
    assert [s.uri for s in listed.segments] == [f"00000000-{s.msn}.m4s" for s in whole.segmenter.segments]
    kinds, scales = ["video", "audio"], [i.clock for i in short.inputs]
    for segment in cold:
        data = read_back(tmp_path / "rec" / "live" / "test", segment, kinds, scales)
        assert data is not None, f"segment {segment.msn}"
        original = whole.segmenter.segment(segment.msn)
        assert original is not None
        got, want = tmp_path / "got.mp4", tmp_path / "want.mp4"
        got.write_bytes(short.init + data)  # type: ignore[operator]
        want.write_bytes(whole.init + original.data)  # type: ignore[operator]
        for kind in ("video", "audio"):
            a, b = file_units(got, kind), file_units(want, kind)
            # audio sent before the keyframe that began a recording's file went to the file before
            missing = len(b) - len(a) if kind == "audio" else 0
            assert 0 <= missing <= 5, (segment.msn, kind, missing)
            assert [u.data for u in a] == [u.data for u in b[missing:]], (segment.msn, kind)
            assert [(u.pts, u.dts) for u in a] == [(u.pts, u.dts) for u in b[missing:]], (segment.msn, kind)
