"""MediaReader on generated files: order, payloads, timestamps, seeking, looping, broken files."""

from __future__ import annotations

import itertools
import shutil
import subprocess
import time
from fractions import Fraction
from pathlib import Path

import av
import pytest

from media import aac, h264
from media.access_unit import AccessUnit
from media.errors import MediaError
from media.probe import probe
from media.reader import MediaReader, _payloads
from media.track import AacConfig, MediaInfo, Track
from tests import mediagen

needs_ffmpeg = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs the ffmpeg CLI")
needs_ffprobe = pytest.mark.skipif(shutil.which("ffprobe") is None, reason="needs the ffprobe CLI")


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("reader")
    return {
        "mp4": mediagen.make_h264_aac_mp4(d / "a.mp4", faststart=True),
        "moov_end": mediagen.make_moov_at_end_mp4(d / "end.mp4"),
        "mkv": mediagen.make_mkv(d / "a.mkv"),
        "ts": mediagen.make_ts(d / "a.ts"),
        "h264": mediagen.make_annexb_h264(d / "a.h264"),
        "aac": mediagen.make_adts_aac(d / "a.aac"),
        "short": mediagen.make_h264_aac_mp4(d / "short.mp4", seconds=1, faststart=True),
    }


def read_all(path: Path, info: MediaInfo | None = None, **kwargs: object) -> list[AccessUnit]:
    info = info or probe(path)
    with MediaReader(path, info, [t.index for t in info.tracks], **kwargs) as reader:  # type: ignore[arg-type]
        units = []
        while (au := reader.read()) is not None:
            units.append(au)
    return units


def packets(path: Path) -> list[tuple[int, int | None, int | None, bytes]]:
    with av.open(str(path)) as container:
        return [(p.stream.index, p.pts, p.dts, bytes(p)) for p in container.demux() if p.size]


def seconds(info: MediaInfo, au: AccessUnit, value: int | None = None) -> Fraction:
    return (au.pts if value is None else value) * info.track(au.stream_index).time_base


# -- order, payloads, timestamps --------------------------------------------------------------


@pytest.mark.parametrize("name", ["mp4", "moov_end", "mkv", "ts", "h264"])
def test_every_packet_per_track_in_container_order(files: dict[str, Path], name: str) -> None:
    """Each track's packets in container order; across tracks the order is by DTS (see below)."""
    units = read_all(files[name])
    pkts = packets(files[name])
    assert sorted(u.stream_index for u in units) == sorted(p[0] for p in pkts)
    for index in {p[0] for p in pkts}:
        mine = [u for u in units if u.stream_index == index]
        theirs = [p for p in pkts if p[0] == index]
        for unit, (_, pts, _, _) in zip(mine, theirs, strict=True):
            if pts is not None:
                assert unit.pts == pts
    for index in {u.stream_index for u in units}:
        dts = [u.dts for u in units if u.stream_index == index]
        assert all(a < b for a, b in itertools.pairwise(dts)), f"track {index} DTS not increasing"


def test_mp4_timestamps_match_container(files: dict[str, Path]) -> None:
    units = read_all(files["mp4"])
    assert [(u.pts, u.dts) for u in units] == [(p[1], p[2]) for p in packets(files["mp4"])]
    audio = [u for u in units if u.stream_index == 1]
    assert audio[0].pts == -1024  # the encoder's priming frame is kept
    assert all(u.duration == 1024 for u in audio[:-1])
    assert units[0].keyframe and units[0].stream_index == 0


def _length_prefixed_to_nals(data: bytes) -> list[bytes]:
    nals, pos = [], 0
    while pos < len(data):
        size = int.from_bytes(data[pos : pos + 4], "big")
        nals.append(data[pos + 4 : pos + 4 + size])
        pos += 4 + size
    return nals


def test_h264_units_are_the_packets_nal_units(files: dict[str, Path]) -> None:
    video = [p for p in packets(files["mp4"]) if p[0] == 0]
    units = [u for u in read_all(files["mp4"]) if u.stream_index == 0]
    assert len(units) == len(video) == 50
    for unit, (_, _, _, data) in zip(units, video, strict=True):
        nals = _length_prefixed_to_nals(data)
        assert list(unit.nal_units) == nals
        assert unit.data == b"".join(b"\x00\x00\x00\x01" + n for n in nals)
    assert h264.nal_type(units[0].nal_units[-1]) == h264.NAL_IDR


@needs_ffmpeg
@pytest.mark.parametrize("name", ["mp4", "mkv"])
def test_h264_matches_ffmpeg_mp4toannexb(files: dict[str, Path], name: str, tmp_path: Path) -> None:
    out = tmp_path / "v.h264"
    command = ["ffmpeg", "-v", "error", "-i", str(files[name]), "-map", "0:v", "-c:v", "copy"]
    command += ["-bsf:v", "h264_mp4toannexb", "-f", "h264", str(out)]
    subprocess.run(command, check=True, timeout=30)
    expected = [n for n in h264.split_annexb(out.read_bytes()) if h264.nal_type(n) not in (7, 8)]
    units = [u for u in read_all(files[name]) if u.stream_index == 0]
    got = [n for u in units for n in h264.split_annexb(u.data) if h264.nal_type(n) not in (7, 8)]
    assert got == expected


def _ffprobe_packet_count(path: Path, stream: str) -> int:
    command = ["ffprobe", "-v", "error", "-select_streams", stream]
    command += ["-show_entries", "packet=pts", "-of", "csv=p=0", str(path)]
    result = subprocess.run(command, check=True, capture_output=True, text=True, timeout=30)
    return len(result.stdout.split())


@needs_ffprobe
@pytest.mark.parametrize("name", ["mp4", "mkv", "ts", "aac"])
def test_aac_unit_count_matches_ffprobe(files: dict[str, Path], name: str) -> None:
    info = probe(files[name])
    audio = next(t for t in info.tracks if t.kind == "audio")
    units = [u for u in read_all(files[name], info) if u.stream_index == audio.index]
    assert len(units) == _ffprobe_packet_count(files[name], "a:0")


@pytest.mark.parametrize("name", ["ts", "aac"])
def test_adts_headers_are_stripped(files: dict[str, Path], name: str) -> None:
    info = probe(files[name])
    audio = next(t for t in info.tracks if t.kind == "audio")
    raw = [p[3] for p in packets(files[name]) if p[0] == audio.index]
    units = [u for u in read_all(files[name], info) if u.stream_index == audio.index]
    assert [u.data for u in units] == [p[7:] for p in raw]
    assert not any(aac.looks_like_adts(u.data) for u in units)


def test_raw_h264_gets_synthesized_timestamps(files: dict[str, Path]) -> None:
    info = probe(files["h264"])
    units = read_all(files["h264"], info)
    step = round(1 / (Fraction(25) * info.tracks[0].time_base))
    assert [u.dts for u in units] == [i * step for i in range(50)]
    assert all(u.pts == u.dts for u in units)


def test_raw_adts_timestamps(files: dict[str, Path]) -> None:
    info = probe(files["aac"])
    units = read_all(files["aac"], info)
    tb = info.tracks[0].time_base
    assert [u.pts * tb for u in units[:3]] == [Fraction(i * 1024, 48000) for i in range(3)]


def test_mkv_missing_dts_back_filled(files: dict[str, Path]) -> None:
    assert any(p[2] is None for p in packets(files["mkv"]) if p[0] == 0)
    units = [u for u in read_all(files["mkv"]) if u.stream_index == 0]
    assert [u.dts for u in units[:4]] == [-80, -40, 0, 40]
    assert all(u.dts <= u.pts for u in units)


def test_several_adts_frames_in_one_packet_give_consecutive_units() -> None:
    track = Track(
        index=0,
        kind="audio",
        codec="aac",
        time_base=Fraction(1, 90000),
        sample_rate=44100,
        config=AacConfig(bytes.fromhex("1210"), 2, 44100, 2, adts_input=True),
    )
    frames = [bytes([0x21, i]) * 4 for i in range(3)]
    data = b"".join(aac.build_adts_header(2, 4, 2, len(f)) + f for f in frames)
    out = _payloads(track, data, 0)
    assert [o[0] for o in out] == frames
    assert [o[2] for o in out] == [0, 2090, 4180]  # 1024 / 44100 s in 1/90000 ticks, rounded
    assert [o[3] for o in out] == [2090, 2090, 2089]


def test_selected_streams_only(files: dict[str, Path]) -> None:
    info = probe(files["mp4"])
    with MediaReader(files["mp4"], info, [1]) as reader:
        units = reader.read_batch(Fraction(100), 10_000)
    assert {u.stream_index for u in units} == {1}
    assert len(units) == 95


def test_bad_stream_selection(files: dict[str, Path]) -> None:
    info = probe(files["mp4"])
    with pytest.raises(MediaError, match="index 5"):
        MediaReader(files["mp4"], info, [0, 5])
    with pytest.raises(MediaError):
        MediaReader(files["mp4"], info, [])


def test_read_batch(files: dict[str, Path]) -> None:
    info = probe(files["mp4"])
    with MediaReader(files["mp4"], info, [0, 1]) as reader:
        first = reader.read_batch(Fraction(1, 2), 10_000)
        assert first and all(seconds(info, u, u.dts) <= Fraction(1, 2) for u in first)
        second = reader.read_batch(Fraction(1), 5)
        assert len(second) == 5 and seconds(info, second[0], second[0].dts) > Fraction(1, 2)
        rest = reader.read_batch(Fraction(100), 10_000)
        assert reader.read() is None
    assert len(first) + len(second) + len(rest) == len(packets(files["mp4"]))


def test_close_then_read(files: dict[str, Path]) -> None:
    info = probe(files["mp4"])
    reader = MediaReader(files["mp4"], info, [0, 1])
    assert reader.read() is not None
    reader.close()
    assert reader.read() is None
    with pytest.raises(MediaError, match="closed"):
        reader.seek(Fraction(0))


def test_reading_is_fast(files: dict[str, Path]) -> None:
    info = probe(files["mp4"])
    with MediaReader(files["mp4"], info, [0, 1], loop=True) as reader:
        begin = time.process_time()  # CPU time: what reading costs, not what a loaded machine adds
        units = reader.read_batch(Fraction(60), 100_000)
        elapsed = time.process_time() - begin
    assert len(units) > 4000
    assert elapsed / len(units) < 200e-6, f"{elapsed / len(units) * 1e6:.0f} us per access unit"


# -- seeking ----------------------------------------------------------------------------------

TARGETS = [Fraction(0), Fraction(1, 2), Fraction(1), Fraction(109, 100), Fraction(19, 10), Fraction(10)]


@pytest.mark.parametrize("name", ["mp4", "moov_end", "mkv", "ts", "h264", "aac"])
def test_seek_lands_on_keyframe_at_or_before_target(files: dict[str, Path], name: str) -> None:
    info = probe(files[name])
    ref = info.tracks[0]
    gop = Fraction(1)
    file_start = min(t.start_time or 0 for t in info.tracks)
    with MediaReader(files[name], info, [t.index for t in info.tracks]) as reader:
        for target in TARGETS:
            start = reader.seek(target)
            units = reader.read_batch(start + Fraction(1, 2), 1000)
            first_ref = next(u for u in units if u.stream_index == ref.index)
            assert first_ref.keyframe
            assert seconds(info, first_ref) == start
            assert start <= max(target, ref.start_time or 0)
            clamped = min(target, file_start + (info.duration or Fraction(2)))
            step = gop if ref.kind == "video" else Fraction(1, 10)
            assert start > clamped - step - Fraction(1, 10), (target, start)
            video = [u for u in units if u.stream_index == ref.index and ref.kind == "video"]
            if video:
                assert min(seconds(info, u) for u in video) >= start
            for unit in units:
                if info.track(unit.stream_index).kind == "audio" and start > file_start:
                    assert seconds(info, unit, unit.pts + unit.duration) > start


def test_seek_then_read_to_end(files: dict[str, Path]) -> None:
    info = probe(files["mp4"])
    everything = read_all(files["mp4"], info)
    with MediaReader(files["mp4"], info, [0, 1]) as reader:
        reader.seek(Fraction(1))
        after = reader.read_batch(Fraction(100), 10_000)
    video_all = [u for u in everything if u.stream_index == 0]
    video_after = [u for u in after if u.stream_index == 0]
    assert video_after == video_all[25:]


def test_seek_to_start_keeps_priming(files: dict[str, Path]) -> None:
    info = probe(files["mp4"])
    with MediaReader(files["mp4"], info, [0, 1]) as reader:
        reader.read_batch(Fraction(1), 1000)
        assert reader.seek(Fraction(0)) == 0
        units = reader.read_batch(Fraction(1, 10), 1000)
    assert min(u.pts for u in units if u.stream_index == 1) == -1024


# -- looping ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["short", "mkv", "ts", "h264", "aac"])
def test_loop_timestamps_keep_increasing(files: dict[str, Path], name: str) -> None:
    info = probe(files[name])
    once = read_all(files[name], info)
    with MediaReader(files[name], info, [t.index for t in info.tracks], loop=True) as reader:
        units = [reader.read() for _ in range(len(once) * 3 + 5)]
    assert all(u is not None for u in units)
    for track in info.tracks:
        mine = [u for u in units if u is not None and u.stream_index == track.index]
        dts = [u.dts for u in mine]
        assert all(a < b for a, b in itertools.pairwise(dts)), track.index
        pts = [u.pts for u in mine]
        assert len(set(pts)) == len(pts)
        if track.kind == "audio":
            assert all(a < b for a, b in itertools.pairwise(pts))
            # Seamless: each AU starts where the previous one ended (within a tick of rounding).
            gaps = {b.pts - (a.pts + a.duration) for a, b in itertools.pairwise(mine)}
            assert max(abs(g) for g in gaps) <= max(1, round(Fraction(1, 1000) / track.time_base))


def test_loop_skips_priming_after_first_pass(files: dict[str, Path]) -> None:
    info = probe(files["short"])
    once = read_all(files["short"], info)
    audio_once = [u for u in once if u.stream_index == 1]
    with MediaReader(files["short"], info, [0, 1], loop=True) as reader:
        units = reader.read_batch(Fraction(4), 100_000)
    audio = [u for u in units if u.stream_index == 1 and u.pts < 3 * 48000]
    video = [u for u in units if u.stream_index == 0 and u.pts < 3 * 12800]
    assert len(video) == 75  # three passes of 25 frames
    assert audio[0].pts < 0
    assert sum(1 for u in audio if u.pts < 0) == 1
    assert len(audio) == len(audio_once) + 2 * (len(audio_once) - 1)
    assert [u.pts for u in video[25:50]] == [u.pts + 12800 for u in video[:25]]


def test_loop_stops_when_a_pass_yields_nothing(files: dict[str, Path]) -> None:
    """A pass that yields nothing (here: truncated to no frames) must not spin forever."""
    info = probe(files["ts"])
    broken = files["ts"].with_name("tiny.ts")
    broken.write_bytes(files["ts"].read_bytes()[: 3 * 188])  # PAT, PMT, no complete frame
    with MediaReader(broken, info, [0, 1], loop=True) as reader:
        assert reader.read_batch(Fraction(100), 100) == []


# -- broken files -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["mp4", "mkv", "ts", "h264", "aac"])
@pytest.mark.parametrize("fraction", [0.05, 0.3, 0.5, 0.77, 0.95])
def test_truncated_file_ends_or_raises_media_error(
    files: dict[str, Path], tmp_path: Path, name: str, fraction: float
) -> None:
    cut = mediagen.make_truncated(files[name], tmp_path / f"cut-{files[name].name}", fraction)
    begin = time.process_time()  # CPU time: no spinning on a cut file (a blocked one hits the timeout)
    try:
        info = probe(cut)
        units = read_all(cut, info)
    except MediaError as exc:
        assert str(cut) in str(exc)
    else:
        assert len(units) < len(packets(files[name]))
    assert time.process_time() - begin < 5


def test_corrupt_length_prefix_raises_media_error(files: dict[str, Path], tmp_path: Path) -> None:
    data = bytearray(files["mp4"].read_bytes())
    mdat = data.index(b"mdat") + 4
    data[mdat : mdat + 4] = b"\x7f\xff\xff\xff"  # first NAL length now runs far past the packet
    broken = tmp_path / "corrupt.mp4"
    broken.write_bytes(bytes(data))
    info = probe(broken)
    with pytest.raises(MediaError, match="corrupt or truncated packet"):
        read_all(broken, info)
