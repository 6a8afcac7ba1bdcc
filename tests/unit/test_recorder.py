"""The recorder without sockets: a live path fed with a file's access units as RTP would deliver them
(PTS only, decode order), written to segments that must hold exactly those units."""

from __future__ import annotations

import dataclasses
import logging
import shutil
from fractions import Fraction
from pathlib import Path

import av
import pytest

from media import h265
from media.access_unit import AccessUnit
from media.h264 import nal_type as h264_type
from media.h265 import nal_type as h265_type
from media.muxer import FileMuxer, MuxTrack, opus_head
from media.probe import probe
from media.reader import MediaReader
from media.track import Track
from streamd.catalog import Catalog
from streamd.config import PathSettings, ServerConfig
from streamd.live.announced import AnnouncedTrack, RelayedFormat
from streamd.live.hub import LivePath
from streamd.live.recorder import Recorder, record_settings
from streamd.rtp.payload.registry import payload_format_for
from tests.mediagen import make_audio, make_h264_aac_mp4, make_with_ffmpeg


def as_live(path: Path, *, in_band: bool = False) -> tuple[LivePath, list[AccessUnit]]:
    """A live path with ``path``'s tracks and its units in RTP clocks, PTS only (like a publisher's)."""
    info = probe(path)
    tracks, clocks = [], {}
    for t in info.tracks:
        clock = 90000 if t.kind == "video" else (48000 if t.codec == "opus" else t.sample_rate)
        assert clock is not None
        clocks[t.index] = (clock, t.time_base)
        track = dataclasses.replace(t, time_base=Fraction(1, clock))
        fmt = payload_format_for(track, 96 + t.index)
        if in_band:  # the SDP said nothing: parameter sets only in the stream
            track = dataclasses.replace(track, config=None)
        tracks.append(AnnouncedTrack(t.index, f"trackID={t.index}", track, fmt, True))
    live = LivePath.from_tracks("live/test", tracks, "test")
    live.online = True
    units = []
    with MediaReader(path, info, [t.index for t in info.tracks]) as reader:
        while (au := reader.read()) is not None:
            clock, base = clocks[au.stream_index]
            ticks = round(au.pts * base * clock)
            nals = au.nal_units
            if in_band and au.keyframe and nals:
                params = [
                    n for n in info.track(au.stream_index).config.sps + info.track(au.stream_index).config.pps
                ]  # type: ignore[union-attr]
                nals = (*params, *nals)
            units.append(dataclasses.replace(au, pts=ticks, dts=ticks, nal_units=nals))
    return live, units


def record(live: LivePath, units: list[AccessUnit], folder: Path, container: str, segment: float) -> Recorder:
    config = ServerConfig(
        record_dir=folder,
        record_format=container,
        record_segment=segment,
        paths={"live/*": PathSettings(record=True)},
    )
    settings = record_settings(config, live.name)
    assert settings is not None and settings.folder == folder / "live" / "test"
    recorder = Recorder(live, settings)
    assert recorder.start()
    for au in units:
        live.push_unit(au.stream_index, au)
    recorder.stop()
    recorder.join(30)
    assert not recorder.running and not recorder.failed
    return recorder


def file_units(path: Path, kind: str) -> list[AccessUnit]:
    info = probe(path)
    index = next(t.index for t in info.tracks if t.kind == kind)
    with MediaReader(path, info, [index]) as reader:
        return list(iter(reader.read, None))


def comparable(nals: list[bytes], codec: str) -> list[bytes]:
    if codec == "h264":
        return [n for n in nals if h264_type(n) not in (7, 8, 9)]
    return [n for n in nals if h265_type(n) not in (32, 33, 34, 35)]


def check(recorder: Recorder, source: Path, codec: str, container: str) -> list[Path]:
    files = recorder.files
    assert files and all(f.exists() and f.suffix == "." + container for f in files)
    assert not list(files[0].parent.glob("*.part"))
    assert files == sorted(files)
    got = [n for f in files for au in file_units(f, "video") for n in au.nal_units]
    want = [n for au in file_units(source, "video") for n in au.nal_units]
    assert comparable(got, codec) == comparable(want, codec)
    for f in files:
        first = file_units(f, "video")[0]
        assert first.keyframe
    return files


def test_h264_with_b_frames_and_aac_to_mp4(tmp_path: Path) -> None:
    source = make_h264_aac_mp4(tmp_path / "src.mp4", seconds=4, bframes=True, gop=25)
    live, units = as_live(source)
    recorder = record(live, units, tmp_path / "rec", "mp4", 1)
    files = check(recorder, source, "h264", "mp4")
    assert len(files) == 4
    assert recorder.inputs[0].dts is not None and recorder.inputs[0].dts.depth == 1
    audio = sum(len(file_units(f, "audio")) for f in files)
    assert abs(audio - len(file_units(source, "audio"))) <= 2
    assert not live.unit_listeners  # stopped: the tap is gone


def test_parameter_sets_only_in_band_to_matroska(tmp_path: Path) -> None:
    source = make_h264_aac_mp4(tmp_path / "src.mp4", seconds=3, bframes=True, gop=25)
    live, units = as_live(source, in_band=True)
    recorder = record(live, units, tmp_path / "rec", "mkv", 1)
    check(recorder, source, "h264", "mkv")
    with av.open(str(recorder.files[0])) as container:
        video = container.streams.video[0]
        assert (video.codec_context.width, video.codec_context.height) == (320, 240)


def hevc_source(path: Path, *, open_gop: bool) -> Path:
    """3 s of x265 at 10 fps with B-frames and a keyframe each second (CRA when ``open_gop``)."""
    params = f"open-gop={int(open_gop)}:bframes=3:keyint=10:min-keyint=10:log-level=error"
    return make_with_ffmpeg(path, "-c:v", "libx265", "-x265-params", params, seconds=3, fps=10)


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg (libx265)")
@pytest.mark.parametrize("container", ["mp4", "mkv"])
def test_hevc_with_b_frames(tmp_path: Path, container: str) -> None:
    source = hevc_source(tmp_path / "src.mp4", open_gop=False)
    live, units = as_live(source)
    recorder = record(live, units, tmp_path / "rec", container, 1)
    files = check(recorder, source, "hevc", container)
    assert len(files) == 3


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg (libx265)")
def test_open_gop_hevc_files_decode_completely(tmp_path: Path) -> None:
    """x265's default open GOP: a file that begins on a CRA leaves out the RASL pictures after it
    (they need pictures from before the cut), so every recorded picture decodes."""
    source = hevc_source(tmp_path / "src.mp4", open_gop=True)
    live, units = as_live(source)
    assert any(h265.may_lead_rasl(u.nal_units) for u in units[1:]), "the source has CRA pictures"
    assert any(h265.is_rasl(u.nal_units) for u in units), "... and RASL pictures after them"
    recorder = record(live, units, tmp_path / "rec", "mp4", 1)
    assert len(recorder.files) == 3 and recorder.leading_dropped > 0
    for file in recorder.files:
        samples = len(file_units(file, "video"))
        with av.open(str(file)) as container:
            decoded = sum(1 for _ in container.decode(video=0))
        assert decoded == samples, f"{file.name}: {samples} pictures stored, {decoded} decoded"
    kept = sum(len(file_units(f, "video")) for f in recorder.files)
    assert kept + recorder.leading_dropped == sum(1 for u in units if u.stream_index == 0)


def test_opus_audio_only_cut_at_any_unit(tmp_path: Path) -> None:
    source = make_audio(tmp_path / "src.mka", "libopus", seconds=3.5)
    live, units = as_live(source)
    recorder = record(live, units, tmp_path / "rec", "mp4", 1)
    assert len(recorder.files) == 4
    frames = [len(file_units(f, "audio")) for f in recorder.files]
    assert sum(frames) == len(units) and frames[0] == 50  # 20 ms frames
    with av.open(str(recorder.files[0])) as container:
        assert container.streams.audio[0].codec_context.name == "opus"


def test_relayed_track_left_out_and_why(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    source = make_h264_aac_mp4(tmp_path / "src.mp4", seconds=2, gop=25)
    live, units = as_live(source)
    latm = Track(index=2, kind="audio", codec="mp4a-latm", time_base=Fraction(1, 48000))
    relayed = RelayedFormat("audio", 98, "MP4A-LATM/48000/2", "cpresent=0", 48000)
    live.tracks[2] = dataclasses.replace(
        live.tracks[0], announced=AnnouncedTrack(2, "trackID=2", latm, relayed, False)
    )
    with caplog.at_level(logging.WARNING, logger="streamd.live.recorder"):
        recorder = record(live, units, tmp_path / "rec", "mp4", 60)
    assert "track 2 (MP4A-LATM): relayed as RTP unchanged" in caplog.text
    assert set(recorder.inputs) == {0, 1}
    assert len(recorder.files) == 1


def test_queue_overflow_drops_and_resumes_at_a_keyframe(tmp_path: Path) -> None:
    source = make_h264_aac_mp4(tmp_path / "src.mp4", seconds=3, bframes=False, gop=25)
    live, units = as_live(source)
    config = ServerConfig(record_dir=tmp_path / "rec", paths={"live/test": PathSettings(record=True)})
    settings = record_settings(config, "live/test")
    assert settings is not None
    recorder = Recorder(live, settings, max_units=10)
    assert recorder.start()
    with recorder._cond:  # the writer is stuck (a slow disk): the event loop side must not wait
        for au in units:
            live.push_unit(au.stream_index, au)
    recorder.stop()
    recorder.join(30)
    assert recorder.dropped == len(units) - 10
    assert len(recorder.files) == 1
    video = file_units(recorder.files[0], "video")
    assert video[0].keyframe


def test_disk_error_stops_the_recording_not_the_path(tmp_path: Path) -> None:
    source = make_h264_aac_mp4(tmp_path / "src.mp4", seconds=1, gop=25)
    live, units = as_live(source)
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    config = ServerConfig(record_dir=blocker, paths={"live/test": PathSettings(record=True)})
    settings = record_settings(config, "live/test")
    assert settings is not None
    recorder = Recorder(live, settings)
    assert recorder.start()
    readers: list[int] = []
    live.readers.add(lambda index, ticks, payloads, keyframe, leading: readers.append(index))
    for au in units:
        live.push_unit(au.stream_index, au)
    recorder.join(0.5)
    recorder.stop()
    recorder.join(30)
    assert recorder.failed and not recorder.files
    assert len(readers) == len(units)  # the path carried on


def test_unsafe_or_unrecorded_paths() -> None:
    config = ServerConfig(paths={"live/*": PathSettings(record=True)})
    assert record_settings(config, "other") is None
    assert record_settings(config, "live/../x") is None
    settings = record_settings(config, "live/cam")
    assert settings is not None
    assert settings.folder == Path("media/recordings/live/cam")
    assert (settings.container, settings.segment) == ("mp4", 60.0)


def test_catalog_hides_files_being_written(tmp_path: Path) -> None:
    source = make_h264_aac_mp4(tmp_path / "a.mp4", seconds=1)
    shutil.copy(source, tmp_path / "b.mp4.part")
    catalog = Catalog(tmp_path, test_stream=None)
    assert catalog.list_paths() == ["a.mp4"]
    with pytest.raises(Exception, match="being recorded"):
        catalog.locate("b.mp4.part")


def test_muxer_refuses_what_it_cannot_write(tmp_path: Path) -> None:
    with pytest.raises(Exception, match="cannot record"):
        FileMuxer(tmp_path / "x.mp4", "mp4", [MuxTrack("vp8", 90000, b"", 64, 64)])
    with pytest.raises(Exception, match="cannot record"):
        FileMuxer(tmp_path / "x.avi", "avi", [])
    assert opus_head(2)[:10] == b"OpusHead\x01\x02"
