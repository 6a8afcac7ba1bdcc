"""HLS segments of real files: joined, they give back every packet of the source, bit for bit and
with the same timestamps (plus the file's one shift), whatever the container; and the index
refuses files that cannot be cut."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import pytest

from media import h264
from media.audio_track import EncodedAudio, StillEncoding
from media.errors import MediaError
from media.keyframe_index import build
from media.segment_mux import SegmentJob, init_segment, make_segment
from streamd.hls.vod_plan import cut, shift
from tests import mediagen

SECONDS = 3


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("hls")
    made = {
        "bframes.mp4": mediagen.make_h264_aac_mp4(root / "bframes.mp4", seconds=SECONDS, faststart=True),
        "moov-end.mp4": mediagen.make_moov_at_end_mp4(root / "moov-end.mp4", seconds=SECONDS),
        "bframes.mkv": mediagen.make_mkv(root / "bframes.mkv", seconds=SECONDS),
        "bframes.ts": mediagen.make_ts(root / "bframes.ts", seconds=SECONDS),
        "tone.m4a": mediagen.make_audio(root / "tone.m4a", "aac", seconds=SECONDS, container_format="mp4"),
    }
    made["truncated.mp4"] = mediagen.make_truncated(made["bframes.mp4"], root / "truncated.mp4", 0.6)
    return made


def packets(path: Path | bytes) -> dict[str, list[tuple[int, int, bytes]]]:
    """(pts, dts, payload) of every packet, by track kind."""
    source = av.open(str(path))
    out: dict[str, list[tuple[int, int, bytes]]] = {}
    with source:
        for packet in source.demux():
            if packet.size:
                out.setdefault(packet.stream.type, []).append((packet.pts, packet.dts, bytes(packet)))
    return out


def jobs(path: Path, container: str, target: Fraction = Fraction(1)) -> list[SegmentJob]:
    with av.open(str(path)) as source:
        streams = tuple(s.index for s in source.streams if s.type in ("video", "audio"))
    index = build(path, list(streams))
    return [
        SegmentJob(str(path), streams, index.reference, index.by, s.start, s.end, shift(index), container)  # type: ignore[arg-type]
        for s in cut(index, target)
    ]


def segments(path: Path, container: str) -> tuple[list[bytes], Fraction]:
    made = jobs(path, container)
    return [make_segment(job) for job in made], made[0].shift


@pytest.mark.parametrize("name", ["bframes.mp4", "moov-end.mp4", "bframes.mkv", "truncated.mp4", "tone.m4a"])
def test_fmp4_segments_join_into_the_source_bit_for_bit(
    files: dict[str, Path], name: str, tmp_path: Path
) -> None:
    path = files[name]
    parts, offset = segments(path, "mp4")
    assert len(parts) >= 2
    joined = tmp_path / "joined.mp4"
    joined.write_bytes(init_segment(jobs(path, "mp4")[0]) + b"".join(parts))
    source, copy = packets(path), packets(joined)
    assert source.keys() == copy.keys()
    for kind in source:
        tb = Fraction(next(s for s in av.open(str(joined)).streams if s.type == kind).time_base)
        ticks = round(offset / tb) if offset else 0
        assert [p[2] for p in copy[kind]] == [p[2] for p in source[kind]], kind
        if name.endswith(".mp4") or name.endswith(".m4a"):  # same clock: timestamps moved by the shift only
            assert {(c[0] - s[0], c[1] - s[1]) for s, c in zip(source[kind], copy[kind], strict=True)} == {
                (ticks, ticks)
            }


def test_mpegts_segments_join_into_the_source_frames(files: dict[str, Path], tmp_path: Path) -> None:
    path = files["bframes.mp4"]
    parts, _offset = segments(path, "mpegts")
    joined = tmp_path / "joined.ts"
    joined.write_bytes(b"".join(parts))
    source, copy = packets(path), packets(joined)
    drop = {7, 8, 9}  # parameter sets and access unit delimiters: the TS muxer adds them
    source_nals = [
        n
        for p in source["video"]
        for n in h264.split_length_prefixed(p[2], 4)
        if h264.nal_type(n) not in drop
    ]
    copy_nals = [n for p in copy["video"] for n in h264.split_annexb(p[2]) if h264.nal_type(n) not in drop]
    assert copy_nals == source_nals
    assert len(copy["audio"]) == len(source["audio"])
    dts = [p[1] for p in copy["video"]]
    assert dts == sorted(dts) and len(set(dts)) == len(dts)  # continuous across segment joins


def test_segments_are_the_same_bytes_when_made_again(files: dict[str, Path]) -> None:
    first, _ = segments(files["bframes.mkv"], "mp4")
    again, _ = segments(files["bframes.mkv"], "mp4")
    assert first == again


def test_a_file_without_keyframes_cannot_be_cut(tmp_path: Path) -> None:
    """One IDR at the start (an endless GOP), left out: a stream joined in its middle."""
    whole = mediagen.make_h264_aac_mp4(tmp_path / "one-gop.mp4", seconds=2, gop=1000)
    broken = tmp_path / "no-keyframes.ts"
    with av.open(str(whole)) as source, av.open(str(broken), "w") as sink:
        video = source.streams.video[0]
        out = sink.add_stream_from_template(video)
        for packet in source.demux(video):
            if packet.size and not packet.is_keyframe:
                packet.stream = out
                sink.mux(packet)
    with pytest.raises(MediaError, match="no keyframe"):
        build(broken, [0])


def test_re_encoded_audio_is_handed_out_once_the_encode_has_passed_the_segment() -> None:
    audio = EncodedAudio(1, 1000, 2, b"")
    for n in range(10):  # 10 packets of 100 ms
        audio.add(n * 100, n * 100, 100, bytes([n]))
    got = audio.packets_between(Fraction(3, 10), Fraction(6, 10), wait=0)
    assert [bytes(p) for p in got] == [b"\x03", b"\x04", b"\x05"]
    with pytest.raises(StillEncoding, match="still being re-encoded"):
        audio.packets_between(Fraction(1), Fraction(2), wait=0)
    audio.finish()
    assert [bytes(p) for p in audio.packets_between(Fraction(1, 2), None, wait=0)] == [
        bytes([n]) for n in range(5, 10)
    ]
    broken = EncodedAudio(1, 1000, 2, b"")
    broken.finish(ValueError("decoder"))
    with pytest.raises(MediaError, match="failed: decoder"):
        broken.packets_between(None, None, wait=0)
