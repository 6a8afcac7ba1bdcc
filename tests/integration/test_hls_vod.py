"""On-demand files as HLS, read by players we did not write: ffmpeg/ffprobe (fMP4 and MPEG-TS),
PyAV (seeks in fMP4 HLS), the m3u8 package (every playlist); plus the HTTP rules (caching
headers, 304, 404/415/422)."""

from __future__ import annotations

import itertools
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import av
import m3u8
import pytest

from media import h264
from tests import mediagen
from tests.integration.conftest import ServerProcess, need, start_server, stop_all

pytestmark = pytest.mark.integration

SECONDS = 4  # 25 fps, a keyframe every second; hls_segment_seconds = 1: four segments


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    need("ffmpeg")
    root = tmp_path_factory.mktemp("hls-media")
    clip = mediagen.make_h264_aac_mp4(root / "clip.mp4", seconds=SECONDS, faststart=True, gop=25)
    mediagen.make_moov_at_end_mp4(root / "moov end.mp4", seconds=2, gop=25)
    mediagen.make_truncated(clip, root / "truncated.mp4", 0.6)
    mediagen.make_mkv(root / "clip.mkv", seconds=2)
    mediagen.make_audio(root / "tone.m4a", "aac", seconds=3, container_format="mp4")
    ffmpeg = ["ffmpeg", "-nostdin", "-loglevel", "error", "-y"]
    subprocess.run(
        [*ffmpeg, "-i", str(clip), "-f", "lavfi", "-i", "sine=f=660:d=4", "-map", "0:v", "-map", "0:a",
         "-map", "1:a", "-c:v", "copy", "-c:a:0", "copy", "-c:a:1", "aac", "-metadata:s:a:0", "language=eng",
         "-metadata:s:a:1", "language=fra", "-t", str(SECONDS), str(root / "languages.mp4")],
        check=True, timeout=60,
    )  # fmt: skip
    subprocess.run(
        [
            *ffmpeg,
            "-f",
            "lavfi",
            "-i",
            "testsrc=d=1:s=160x120:r=10",
            "-c:v",
            "mpeg4",
            str(root / "mpeg4.mp4"),
        ],
        check=True,
        timeout=60,
    )
    with av.open(str(clip)) as source, av.open(str(root / "no keyframes.ts"), "w") as sink:
        video = source.streams.video[0]
        out = sink.add_stream_from_template(video)
        for packet in source.demux(video):
            if packet.size and not packet.is_keyframe:  # every IDR left out
                packet.stream = out
                sink.mux(packet)
    return root


@pytest.fixture(scope="module")
def hls(folder: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    tmp = tmp_path_factory.mktemp("hls-server")
    config = tmp / "streamd.toml"
    config.write_text("hls_segment_seconds = 1\n")
    server = start_server(folder, tmp, "--config", str(config))
    yield server
    stop_all(server)


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def packets(path: str | Path, kind: str) -> list[tuple[int | None, bytes]]:
    with av.open(str(path)) as container:
        return [(p.pts, bytes(p)) for p in container.demux() if p.size and p.stream.type == kind]


def comparable_nals(data: list[bytes], annexb: bool) -> list[bytes]:
    drop = {7, 8, 9}  # parameter sets and delimiters: the TS muxer adds them
    split = h264.split_annexb if annexb else (lambda d: h264.split_length_prefixed(d, 4))
    return [n for d in data for n in split(d) if h264.nal_type(n) not in drop]


def test_every_playlist_parses_and_lists_the_whole_file(hls: ServerProcess) -> None:
    status, headers, body = get(hls.http("hls/clip.mp4/index.m3u8"))
    assert status == 200 and headers["Content-Type"].startswith("application/vnd.apple.mpegurl")
    top = m3u8.loads(body.decode())
    assert top.is_variant and top.playlists[0].stream_info.resolution == (320, 240)
    assert (
        top.playlists[0].stream_info.codecs.startswith("avc1.")
        and "mp4a.40.2" in top.playlists[0].stream_info.codecs
    )
    for fmt, ext in (("", "m4s"), ("?format=ts", "ts")):
        top = m3u8.loads(get(hls.http(f"hls/clip.mp4/index.m3u8{fmt}"))[2].decode())
        media = m3u8.loads(get(hls.http(f"hls/clip.mp4/{top.playlists[0].uri}"))[2].decode())
        assert media.playlist_type == "vod" and media.is_endlist and media.media_sequence == 0
        assert [s.uri.split("?")[0] for s in media.segments] == [f"{n}.{ext}" for n in range(SECONDS)]
        assert sum(s.duration for s in media.segments) == pytest.approx(SECONDS, abs=0.1)
        assert all(round(s.duration) <= media.target_duration for s in media.segments)
        assert media.segment_map[0].uri.startswith("init.mp4?v=") if ext == "m4s" else not media.segment_map


def test_audio_tracks_become_renditions_with_their_language(hls: ServerProcess) -> None:
    top = m3u8.loads(get(hls.http("hls/languages.mp4/index.m3u8"))[2].decode())
    assert [(m.type, m.language, m.default, m.uri) for m in top.media] == [
        ("AUDIO", "eng", "YES", None),
        ("AUDIO", "fra", "NO", "a2/media.m3u8"),
    ]
    assert top.playlists[0].stream_info.audio == "audio"
    french = m3u8.loads(get(hls.http("hls/languages.mp4/a2/media.m3u8"))[2].decode())
    assert len(french.segments) == SECONDS
    with av.open(hls.http("hls/languages.mp4/a2/media.m3u8")) as rendition:
        assert [s.type for s in rendition.streams] == ["audio"]
        got = [bytes(p) for p in rendition.demux() if p.size]
    with av.open(str(hls.media / "languages.mp4")) as source:
        assert got == [bytes(p) for p in source.demux(source.streams.audio[1]) if p.size]


@pytest.mark.parametrize("name", ["clip.mp4", "moov end.mp4", "clip.mkv", "truncated.mp4", "tone.m4a"])
def test_ffmpeg_copies_the_fmp4_playlist_bit_exact(hls: ServerProcess, name: str, tmp_path: Path) -> None:
    out = tmp_path / "copy.mkv"
    url = hls.http(f"hls/{urllib.request.quote(name)}/index.m3u8")
    subprocess.run(
        ["ffmpeg", "-nostdin", "-loglevel", "error", "-i", url, "-map", "0", "-c", "copy", "-y", str(out)],
        check=True,
        timeout=60,
    )
    source = hls.media / name
    for kind in ("video", "audio"):
        expected = [data for _pts, data in packets(source, kind)]
        assert [data for _pts, data in packets(out, kind)] == expected, kind


def test_ffprobe_sees_timestamps_continue_across_segments(hls: ServerProcess) -> None:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-select_streams", "v", "-show_entries", "packet=dts", "-of", "csv=p=0",
         hls.http("hls/clip.mp4/index.m3u8")],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    dts = [int(line.split(",")[0]) for line in out.stdout.split()]
    assert len(dts) == 25 * SECONDS
    assert len({b - a for a, b in itertools.pairwise(dts)}) == 1  # one frame apart everywhere


def test_ffmpeg_copies_the_ts_playlist_with_every_frame(hls: ServerProcess, tmp_path: Path) -> None:
    out = tmp_path / "copy.ts"
    subprocess.run(
        ["ffmpeg", "-nostdin", "-loglevel", "error", "-i", hls.http("hls/clip.mp4/index.m3u8?format=ts"),
         "-c", "copy", "-y", str(out)],
        check=True, timeout=60,
    )  # fmt: skip
    source = hls.media / "clip.mp4"
    assert comparable_nals([d for _p, d in packets(out, "video")], True) == comparable_nals(
        [d for _p, d in packets(source, "video")], False
    )
    assert len(packets(out, "audio")) == len(packets(source, "audio"))


@pytest.mark.parametrize("seconds", [0.5, 1.5, 2.5, 3.9])
def test_pyav_seeks_in_fmp4_hls_land_on_the_keyframe_before(hls: ServerProcess, seconds: float) -> None:
    """Debian's ffmpeg 5.1 returns nothing after a seek in fMP4 HLS; PyAV's FFmpeg seeks
    backwards to the start of the segment the time falls in (by the playlist's durations) and
    drops what precedes it there, so it lands on the keyframe before only if every segment starts
    at or before its keyframe's DTS."""
    source = packets(hls.media / "clip.mp4", "video")
    with av.open(hls.http("hls/clip.mp4/index.m3u8")) as player:
        video = player.streams.video[0]
        player.seek(int(seconds * av.time_base))
        first = next(p for p in player.demux(video) if p.size)
        landed = Fraction(first.pts) * first.time_base - Fraction(player.start_time or 0, av.time_base)
    assert first.is_keyframe and bytes(first) == source[int(seconds) * 25][1]
    assert float(landed) == pytest.approx(int(seconds), abs=0.05)


def test_ffmpeg_ss_in_the_ts_variant_starts_at_the_keyframe_before(
    hls: ServerProcess, tmp_path: Path
) -> None:
    out = tmp_path / "from-2.5.ts"
    subprocess.run(
        ["ffmpeg", "-nostdin", "-loglevel", "error", "-ss", "2.5", "-i",
         hls.http("hls/clip.mp4/index.m3u8?format=ts"), "-c", "copy", "-y", str(out)],
        check=True, timeout=60,
    )  # fmt: skip
    got = comparable_nals([d for _p, d in packets(out, "video")][:1], True)
    keyframe = comparable_nals([packets(hls.media / "clip.mp4", "video")[50][1]], False)
    assert got == keyframe


def test_segments_are_immutable_and_revalidate_with_304(hls: ServerProcess) -> None:
    media = get(hls.http("hls/clip.mp4/main/media.m3u8"))
    assert media[1]["Cache-Control"] == "public, max-age=5"
    uri = m3u8.loads(media[2].decode()).segments[1].uri
    status, headers, body = get(hls.http(f"hls/clip.mp4/main/{uri}"))
    assert status == 200 and body[4:8] == b"moof" and headers["Content-Type"] == "video/mp4"
    assert headers["Cache-Control"] == "public, max-age=31536000, immutable"
    etag = headers["ETag"]
    assert etag.startswith('"') and not etag.startswith("W/")
    assert get(hls.http(f"hls/clip.mp4/main/{uri}"))[2] == body  # cached: the same bytes
    again = get(hls.http(f"hls/clip.mp4/main/{uri}"), {"If-None-Match": etag})
    assert again[0] == 304 and again[1]["ETag"] == etag
    assert get(hls.http("hls/clip.mp4/main/2.m4s"))[1]["ETag"] != etag
    playlist_etag = media[1]["ETag"]
    assert get(hls.http("hls/clip.mp4/main/media.m3u8"), {"If-None-Match": playlist_etag})[0] == 304


@pytest.mark.parametrize(
    ("url", "status", "reason"),
    [
        ("hls/missing.mp4/index.m3u8", 404, "no file"),
        ("hls/clip.mp4/main/4.m4s", 404, "the file has 4"),
        ("hls/clip.mp4/main/99999.ts", 404, "the file has 4"),
        ("hls/clip.mp4/main/1.mp4", 404, "no HLS object"),
        ("hls/clip.mp4/a9/media.m3u8", 404, "no audio track"),
        ("hls/clip.mp4/main/0.m4s?v=0000", 404, "reload"),
        ("hls/mpeg4.mp4/index.m3u8", 415, "mpeg4 video cannot be served as HLS"),
        ("hls/no%20keyframes.ts/index.m3u8", 422, "no keyframe"),
        ("hls/no%20keyframes.ts/main/0.m4s", 422, "no keyframe"),
    ],
)
def test_bad_requests_get_a_clear_error(hls: ServerProcess, url: str, status: int, reason: str) -> None:
    got, _headers, body = get(hls.http(url))
    assert got == status and reason in body.decode(), body
