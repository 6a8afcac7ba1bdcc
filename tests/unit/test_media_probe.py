"""probe() on generated files of every container we care about, and on things that are not media."""

from __future__ import annotations

import shutil
import subprocess
import time
from fractions import Fraction
from pathlib import Path

import pytest

from media import h264
from media.errors import MediaError, UnsupportedMedia
from media.probe import probe
from media.track import AacConfig, H264Config, MediaInfo
from tests import mediagen


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("probe")
    return {
        "mp4": mediagen.make_h264_aac_mp4(d / "a.mp4", faststart=True),
        "moov_end": mediagen.make_moov_at_end_mp4(d / "end.mp4"),
        "mkv": mediagen.make_mkv(d / "a.mkv"),
        "ts": mediagen.make_ts(d / "a.ts"),
        "h264": mediagen.make_annexb_h264(d / "a.h264"),
        "aac": mediagen.make_adts_aac(d / "a.aac"),
    }


def _video_ok(info: MediaInfo, *, length_size: int | None) -> None:
    video = next(t for t in info.tracks if t.kind == "video")
    assert video.codec == "h264"
    assert (video.width, video.height, video.frame_rate) == (320, 240, Fraction(25))
    assert isinstance(video.time_base, Fraction)
    assert video.has_b_frames
    assert video.profile == "Main"
    config = video.config
    assert isinstance(config, H264Config)
    assert config.nal_length_size == length_size
    assert [h264.nal_type(s) for s in config.sps] == [7]
    assert [h264.nal_type(p) for p in config.pps] == [8]
    assert h264.profile_level_id(config.sps[0]).startswith("4d")  # Main profile


def _audio_ok(info: MediaInfo, *, adts: bool) -> None:
    audio = next(t for t in info.tracks if t.kind == "audio")
    assert (audio.codec, audio.sample_rate, audio.channels) == ("aac", 48000, 2)
    config = audio.config
    assert isinstance(config, AacConfig)
    assert (config.object_type, config.sample_rate, config.channels) == (2, 48000, 2)
    assert config.audio_specific_config[:2] == bytes.fromhex("1190")
    assert config.adts_input is adts


@pytest.mark.parametrize("name", ["mp4", "moov_end"])
def test_mp4(files: dict[str, Path], name: str) -> None:
    info = probe(files[name])
    assert info.format_name.startswith("mov,mp4")
    assert [t.kind for t in info.tracks] == ["video", "audio"]
    assert [t.index for t in info.tracks] == [0, 1]
    assert info.duration == 2
    assert info.size == files[name].stat().st_size and info.mtime_ns > 0
    _video_ok(info, length_size=4)
    _audio_ok(info, adts=False)
    video, audio = info.tracks
    assert video.duration == 2 and video.start_time == 0
    assert video.time_base == Fraction(1, 12800) and audio.time_base == Fraction(1, 48000)
    assert video.extradata[0] == 1  # avcC
    assert video.bit_rate and audio.bit_rate
    assert info.track(1) is audio
    with pytest.raises(KeyError):
        info.track(7)


def test_mkv_durations_from_tags(files: dict[str, Path]) -> None:
    info = probe(files["mkv"])
    assert info.format_name.startswith("matroska")
    _video_ok(info, length_size=4)
    _audio_ok(info, adts=False)
    assert info.tracks[0].duration == 2
    assert info.tracks[1].duration is not None and abs(info.tracks[1].duration - 2) < Fraction(1, 10)
    assert info.tracks[0].time_base == Fraction(1, 1000)


def test_mpegts_keeps_adts(files: dict[str, Path]) -> None:
    info = probe(files["ts"])
    assert info.format_name == "mpegts"
    _video_ok(info, length_size=None)
    _audio_ok(info, adts=True)
    assert info.tracks[0].time_base == Fraction(1, 90000)
    assert info.tracks[0].start_time is not None and info.tracks[0].start_time > 0


def test_raw_h264(files: dict[str, Path]) -> None:
    info = probe(files["h264"])
    assert info.format_name == "h264"
    assert len(info.tracks) == 1
    _video_ok(info, length_size=None)


def test_raw_adts(files: dict[str, Path]) -> None:
    info = probe(files["aac"])
    assert info.format_name == "aac"
    assert [t.kind for t in info.tracks] == ["audio"]
    _audio_ok(info, adts=True)
    assert info.tracks[0].extradata == b""
    assert any("ADTS" in note for note in info.tracks[0].notes)


def test_h264_config_from_first_keyframe(files: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """With no usable extradata (as in some TS and raw files) the SPS/PPS come from the packets."""
    monkeypatch.setattr(h264, "config_from_extradata", lambda _data: None)
    for name, size in (("ts", None), ("h264", None)):
        info = probe(files[name])
        _video_ok(info, length_size=size)
        assert any("first keyframe" in note for note in info.tracks[0].notes)


def test_probe_is_fast(files: dict[str, Path]) -> None:
    for path in files.values():
        begin = time.process_time()  # CPU time: what probing costs, not what a loaded machine adds
        probe(path)
        assert time.process_time() - begin < 0.5, path


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(MediaError, match="no such file"):
        probe(tmp_path / "nope.mp4")


def test_directory(tmp_path: Path) -> None:
    with pytest.raises(MediaError, match="directory"):
        probe(tmp_path)


def test_not_media(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("hello, this is not a video\n" * 10)
    with pytest.raises(MediaError, match=r"PyAV can open.*Invalid data"):
        probe(path)


def test_no_streams(tmp_path: Path) -> None:
    path = tmp_path / "meta.txt"
    path.write_text(";FFMETADATA1\ntitle=nothing to play\n")  # FFmpeg opens it: zero streams
    with pytest.raises(UnsupportedMedia, match="no streams"):
        probe(path)


def test_truncated_moov_at_end(files: dict[str, Path], tmp_path: Path) -> None:
    broken = mediagen.make_truncated(files["moov_end"], tmp_path / "cut.mp4", 0.8)
    with pytest.raises(MediaError, match=r"cut\.mp4"):
        probe(broken)


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs the ffmpeg CLI")
def test_language_from_stream_metadata(files: dict[str, Path], tmp_path: Path) -> None:
    tagged = tmp_path / "tagged.mkv"
    subprocess.run(
        [
            "ffmpeg",
            "-v",
            "error",
            "-i",
            str(files["mkv"]),
            "-c",
            "copy",
            "-metadata:s:a:0",
            "language=fra",
            str(tagged),
        ],
        check=True,
        timeout=30,
    )
    info = probe(tagged)
    assert [t.language for t in info.tracks] == [None, "fra"]  # "und" is reported as None


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs the ffmpeg CLI")
def test_subtitle_and_data_streams(files: dict[str, Path], tmp_path: Path) -> None:
    """Streams we cannot stream still probe (data streams have no codec context in PyAV)."""
    srt = tmp_path / "s.srt"
    srt.write_text("1\n00:00:00,000 --> 00:00:01,000\nhello\n")
    subs = tmp_path / "subs.mkv"
    command = ["ffmpeg", "-v", "error", "-i", str(files["mkv"]), "-i", str(srt), "-map", "0", "-map", "1"]
    subprocess.run([*command, "-c", "copy", "-c:s", "srt", str(subs)], check=True, timeout=30)
    assert [(t.kind, t.codec) for t in probe(subs).tracks][2] == ("subtitle", "srt")
    timecode = tmp_path / "tc.mov"
    command = ["ffmpeg", "-v", "error", "-i", str(files["mp4"]), "-map", "0:v", "-c", "copy"]
    subprocess.run([*command, "-timecode", "00:00:00:00", str(timecode)], check=True, timeout=30)
    tracks = probe(timecode).tracks
    assert [t.kind for t in tracks] == ["video", "data"]
    assert tracks[1].codec == "unknown"


@pytest.mark.parametrize(("encoder", "suffix", "name"), [("libmp3lame", "mp3", "mp3"), ("mp2", "mp2", "mp2")])
def test_audio_codec_is_named_as_users_know_it(tmp_path: Path, encoder: str, suffix: str, name: str) -> None:
    """The codec's name (``mp3``), not the name of PyAV's decoder for it (``mp3float``)."""
    path = mediagen.make_audio(tmp_path / f"tone.{suffix}", encoder, sample_rate=44100)
    assert [t.codec for t in probe(path).tracks] == [name]


@pytest.mark.parametrize("rate", [44100, 48000])
@pytest.mark.parametrize("xing", ["1", "0"])
def test_an_mp3s_duration_covers_its_last_frame(tmp_path: Path, rate: int, xing: str) -> None:
    """The Range end (npt) reaches the end of the last packet, not only the gapless 1 s: a client
    timing by RTP timestamps (GStreamer rtspsrc) would drop the last frame otherwise."""
    import av

    from streamd.rtsp.server_session import range_header

    path = mediagen.make_audio(
        tmp_path / "a.mp3", "libmp3lame", seconds=1, sample_rate=rate, muxer_options={"write_xing": xing}
    )
    info = probe(path)
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        last = [p for p in container.demux(stream) if p.size][-1]
        last_end = (last.pts + last.duration) * Fraction(stream.time_base)
    origin = info.tracks[0].start_time or Fraction(0)  # the presentation's npt 0
    assert last_end - origin <= info.duration < last_end - origin + Fraction(1152, rate)
    assert info.duration >= 1
    end = Fraction(range_header(Fraction(0), None, info.duration).split("-")[1])
    assert end >= last_end - origin - Fraction(1, 1000)  # npt is written to the millisecond
