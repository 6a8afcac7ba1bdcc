"""On-demand files as HLS, read by players we did not write: ffmpeg/ffprobe (fMP4 and MPEG-TS),
PyAV (seeks in fMP4 HLS), the m3u8 package (every playlist); plus the HTTP rules (caching
headers, 304, 404/415/422)."""

from __future__ import annotations

import itertools
import os
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
from tests.integration.chromium import CHROMIUM, PLAYED_SECONDS, chromium_tab
from tests.integration.conftest import ARTIFACTS, ServerProcess, need, start_server, stop_all
from tests.integration.hlsjs import PLAY_WITH_HLS_JS, PLAYED, hls_js_path, load_hls_js

pytestmark = pytest.mark.integration

SECONDS = 4  # 25 fps, a keyframe every second; hls_segment_seconds = 1: four segments
# the codecs HLS carries as they are, beyond H.264 + AAC (2 s, a keyframe every second)
CODECS = {
    "hevc-mp3.mp4": ["-c:v", "libx265", "-x265-params", "keyint=25:log-level=error", "-c:a", "libmp3lame"],
    "av1-opus.mp4": [
        "-c:v",
        "libsvtav1",
        "-g",
        "25",
        "-preset",
        "12",
        "-svtav1-params",
        "verbosity=0",
        "-c:a",
        "libopus",
    ],
    "h264-ac3.mp4": ["-c:v", "libx264", "-g", "25", "-c:a", "ac3"],
    "h264-eac3.mkv": ["-c:v", "libx264", "-g", "25", "-c:a", "eac3"],
}


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
        [*ffmpeg, "-i", str(clip), "-f", "lavfi", "-i", "sine=d=4", "-map", "0:v", "-map", "1:a",
         "-c:v", "copy", "-c:a", "flac", "-t", str(SECONDS), str(root / "flac.mkv")],
        check=True, timeout=60,
    )  # fmt: skip
    mediagen.make_audio(root / "tone.flac", "flac", seconds=3)
    (root / "notes.txt").write_text("not a media file\n")
    lavfi = ["-f", "lavfi", "-i", "testsrc=d=2:s=160x120:r=25", "-f", "lavfi", "-i", "sine=d=2"]
    for name, codecs in CODECS.items():
        subprocess.run([*ffmpeg, *lavfi, *codecs, str(root / name)], check=True, timeout=120)
    subprocess.run(
        [*ffmpeg, "-f", "lavfi", "-i", "testsrc=d=1:s=160x120:r=10", "-c:v", "mpeg4",
         str(root / "mpeg4.mp4")],
        check=True, timeout=60,
    )  # fmt: skip
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
        ("AUDIO", "eng", "YES", "a1/media.m3u8"),
        ("AUDIO", "fra", "NO", "a2/media.m3u8"),
    ]
    assert top.playlists[0].stream_info.audio == "audio"
    assert top.playlists[0].stream_info.codecs.count("mp4a.40.2") == 1
    with av.open(hls.http(f"hls/languages.mp4/{top.playlists[0].uri}")) as main:
        assert [s.type for s in main.streams] == ["video"]  # every audio track a rendition of its own
    french = m3u8.loads(get(hls.http("hls/languages.mp4/a2/media.m3u8"))[2].decode())
    assert len(french.segments) == SECONDS
    with av.open(hls.http("hls/languages.mp4/a2/media.m3u8")) as rendition:
        assert [s.type for s in rendition.streams] == ["audio"]
        got = [bytes(p) for p in rendition.demux() if p.size]
    with av.open(str(hls.media / "languages.mp4")) as source:
        assert got == [bytes(p) for p in source.demux(source.streams.audio[1]) if p.size]


@pytest.mark.parametrize(
    "name", ["clip.mp4", "moov end.mp4", "clip.mkv", "truncated.mp4", "tone.m4a", *CODECS]
)
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


@pytest.mark.parametrize(("name", "fmt"), [("flac.mkv", ""), ("flac.mkv", "?format=ts"), ("tone.flac", "")])
def test_audio_hls_cannot_carry_is_aac_encoded_once_without_gaps(
    hls: ServerProcess, name: str, fmt: str
) -> None:
    """FLAC becomes one AAC stream made once per file: every segment join is seamless (a frame
    of 1024 samples after the other) and the duration is the source's."""
    top = m3u8.loads(get(hls.http(f"hls/{name}/index.m3u8{fmt}"))[2].decode())
    assert "mp4a.40.2" in top.playlists[0].stream_info.codecs
    with av.open(hls.http(f"hls/{name}/index.m3u8{fmt}")) as player:
        audio = player.streams.audio[0]
        assert audio.codec_context.name == "aac"
        stamps = [p.pts for p in player.demux(audio) if p.size]
    step = 1024 / audio.codec_context.sample_rate / audio.time_base
    assert all(abs((b - a) - step) <= 1 for a, b in itertools.pairwise(stamps))
    with av.open(str(hls.media / name)) as source:
        seconds = float(source.duration / av.time_base)
    assert len(stamps) * 1024 / audio.codec_context.sample_rate == pytest.approx(seconds, abs=0.1)


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


@pytest.mark.parametrize("name", ["hevc-mp3.mp4", "h264-ac3.mp4", "h264-eac3.mkv"])
def test_ffmpeg_reads_every_frame_of_the_ts_variant(hls: ServerProcess, name: str, tmp_path: Path) -> None:
    out = tmp_path / "copy.ts"
    subprocess.run(
        ["ffmpeg", "-nostdin", "-loglevel", "error", "-i", hls.http(f"hls/{name}/index.m3u8?format=ts"),
         "-map", "0", "-c", "copy", "-y", str(out)],
        check=True, timeout=60,
    )  # fmt: skip
    for kind in ("video", "audio"):
        assert len(packets(out, kind)) == len(packets(hls.media / name, kind)), kind


def test_av1_has_no_ts_variant(hls: ServerProcess) -> None:
    status, _headers, body = get(hls.http("hls/av1-opus.mp4/index.m3u8?format=ts"))
    assert status == 415 and b"av1 cannot go in MPEG-TS" in body


def ffplay_clock(url: str, *options: str) -> list[float]:
    """The master clock ffplay reports while it plays ``url`` headless to the end (nan dropped)."""
    need("ffplay")
    done = subprocess.run(
        ["ffplay", "-nodisp", "-autoexit", "-loglevel", "warning", "-stats", *options, url],
        capture_output=True, text=True, timeout=60, env={**os.environ, "SDL_AUDIODRIVER": "dummy"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    fields = [line.split() for line in done.stderr.replace("\r", "\n").splitlines() if "M-A" in line]
    return [float(f[0]) for f in fields if f and f[0] != "nan"]


@pytest.mark.parametrize("fmt", ["", "?format=ts"])
def test_ffplay_plays_to_the_end(hls: ServerProcess, fmt: str) -> None:
    clock = ffplay_clock(hls.http(f"hls/clip.mp4/index.m3u8{fmt}"))
    assert clock and clock[0] < 0.5 and clock[-1] >= SECONDS - 0.2, clock[:3] + clock[-3:]


def test_ffplay_seeks_in_the_ts_variant(hls: ServerProcess) -> None:
    """``ffplay -ss 2.5``: from the keyframe at 2 s (Debian's ffmpeg 5.1 returns nothing after a
    seek in fMP4 HLS, so the seek is checked with the TS variant, as the issue says)."""
    clock = ffplay_clock(hls.http("hls/clip.mp4/index.m3u8?format=ts"), "-ss", "2.5")
    assert clock and 1.9 <= clock[0] <= 2.6 and clock[-1] >= SECONDS - 0.2, clock[:3] + clock[-3:]


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
    assert headers["Access-Control-Allow-Origin"] == "*"  # web players on other sites
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
        ("hls/notes.txt/index.m3u8", 415, "not a media file"),
        ("hls/no%20keyframes.ts/index.m3u8", 422, "no keyframe"),
        ("hls/no%20keyframes.ts/main/0.m4s", 422, "no keyframe"),
    ],
)
def test_bad_requests_get_a_clear_error(hls: ServerProcess, url: str, status: int, reason: str) -> None:
    got, _headers, body = get(hls.http(url))
    assert got == status and reason in body.decode(), body


async def test_chromium_watch_page_plays_the_hls_playlist_and_seeks(
    hls: ServerProcess, tmp_path: Path
) -> None:
    """Under WebRTC (the default, streamd/webrtc/watch.js; ``?protocol=hls`` keeps the page's own
    player), the watch page picks native HLS when the browser says it plays it (Chromium 14x+ on
    Linux does; hls.js is the live side's fallback for browsers that do not)."""
    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip("chromium is not installed (scripts/test installs it)")
    async with chromium_tab(tmp_path) as tab:
        native = await tab.evaluate(
            "document.createElement('video').canPlayType('application/vnd.apple.mpegurl')"
        )
        if not native:
            pytest.skip(
                "this Chromium has no native HLS (hls.js is installed by scripts/test for the live side)"
            )
        await tab.call("Page.navigate", url=hls.http("watch/clip.mp4?protocol=hls"))
        state = await tab.wait_for(PLAYED_SECONDS.format(1.0), timeout=60)
        assert state["error"] is None and state["w"] == 320, state
        source = await tab.evaluate("document.getElementById('player').currentSrc")
        assert "/hls/clip.mp4/index.m3u8" in source, source
        assert await tab.evaluate("document.getElementById('status').textContent") == ""
        assert await tab.evaluate("document.getElementById('player').duration") == pytest.approx(
            SECONDS, abs=0.2
        )
        await tab.evaluate(
            "(() => { const v = document.getElementById('player'); window.seekedAt = null;"
            " v.addEventListener('seeked', () => { window.seekedAt = v.currentTime }, {once: true});"
            " v.currentTime = 3.0 })()"
        )
        seeked = await tab.wait_for("window.seekedAt", timeout=30)
        assert 2.9 <= seeked <= 3.2, seeked
        later = await tab.wait_for(
            "(() => { const v = document.getElementById('player');"
            " return (v.currentTime > 3.3 || v.ended) && v.currentTime })()",
            timeout=30,
        )
        assert later > 3.3
        await tab.screenshot(ARTIFACTS / "hls-vod-watch-page.png")


def test_index_and_api_carry_the_hls_links(hls: ServerProcess) -> None:
    paths = {p["name"]: p for p in hls.api("paths")["paths"]}
    assert paths["clip.mp4"]["hls_url"] == "/hls/clip.mp4/index.m3u8"
    assert paths["moov end.mp4"]["hls_url"] == "/hls/moov%20end.mp4/index.m3u8"
    index = get(hls.http())[2].decode()
    assert 'href="/hls/clip.mp4/index.m3u8">hls</a>' in index
    watch = get(hls.http("watch/clip.mp4?start=2"))[2].decode()
    assert '<a id=hls href="/hls/clip.mp4/index.m3u8" data-play=1 data-start="2">' in watch
    assert 'src="/mp4/clip.mp4?start=2"' in watch  # without script, or without native HLS


async def test_hls_js_plays_seeks_and_switches_audio_renditions(hls: ServerProcess, tmp_path: Path) -> None:
    """hls.js (MSE) in Chromium: the fMP4 playlist plays, a seek lands, and the file's second
    audio track is offered with its language and plays when chosen."""
    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip("chromium is not installed (scripts/test installs it)")
    hls_js_path()
    async with chromium_tab(tmp_path) as tab:
        await tab.call("Page.navigate", url=hls.http())
        await tab.wait_for("document.readyState === 'complete'")
        await load_hls_js(tab)
        await tab.evaluate(PLAY_WITH_HLS_JS.format(url="/hls/languages.mp4/index.m3u8"))
        state = await tab.wait_for(PLAYED.format(id="hlsjs", seconds=1.0), timeout=60)
        assert state["error"] is None and state["w"] == 320, state
        tracks = await tab.evaluate("hls.audioTracks.map(t => t.lang)")
        assert tracks == ["eng", "fra"], tracks
        await tab.evaluate(
            "(() => { const v = document.getElementById('hlsjs'); window.seekedAt = null;"
            " v.addEventListener('seeked', () => { window.seekedAt = v.currentTime }, {once: true});"
            " hls.audioTrack = 1; v.currentTime = 2.5 })()"
        )
        seeked = await tab.wait_for("window.seekedAt", timeout=30)
        assert 2.4 <= seeked <= 2.7, seeked
        await tab.wait_for(
            "(() => { const v = document.getElementById('hlsjs'); return v.currentTime > 3.0 || v.ended })()",
            timeout=30,
        )
        assert await tab.evaluate("hls.audioTrack") == 1
        errors = await tab.evaluate("window.hlsErrors")
        assert not [e for e in errors if "fatal" in e], errors


async def test_hls_js_plays_the_ts_variant_audio_only_matroska_and_flac(
    hls: ServerProcess, tmp_path: Path
) -> None:
    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip("chromium is not installed (scripts/test installs it)")
    hls_js_path()
    names = [
        "clip.mp4/index.m3u8?format=ts",
        "tone.m4a/index.m3u8",
        "clip.mkv/index.m3u8",
        "flac.mkv/index.m3u8",
    ]
    async with chromium_tab(tmp_path) as tab:
        for name in names:  # one browser, a fresh page each
            await tab.call("Page.navigate", url=hls.http(f"?for={name}"))
            await tab.wait_for(
                f"document.readyState === 'complete' && location.search.includes('{name[:8]}')"
            )
            await load_hls_js(tab)
            await tab.evaluate(PLAY_WITH_HLS_JS.format(url=f"/hls/{name}"))
            state = await tab.wait_for(PLAYED.format(id="hlsjs", seconds=1.0), timeout=60)
            assert state["error"] is None, (name, state)
            errors = await tab.evaluate("window.hlsErrors")
            assert not [e for e in errors if "fatal" in e], (name, errors)


def test_a_token_in_the_playlist_url_reaches_every_url_it_lists(hls: ServerProcess) -> None:
    """Players do not carry a playlist's query to the URLs inside it: streamd writes it there."""
    top = m3u8.loads(get(hls.http("hls/clip.mp4/index.m3u8?jwt=t0ken"))[2].decode())
    assert top.playlists[0].uri == "main/media.m3u8?jwt=t0ken"
    media = m3u8.loads(get(hls.http(f"hls/clip.mp4/{top.playlists[0].uri}"))[2].decode())
    assert all(s.uri.endswith("&jwt=t0ken") for s in media.segments)
    assert media.segment_map[0].uri.endswith("&jwt=t0ken")


async def test_chromium_watch_page_plays_audio_or_falls_back_to_mp4(
    hls: ServerProcess, tmp_path: Path
) -> None:
    """Separate audio renditions and re-encoded FLAC play with sound in native HLS; a codec the
    browser lacks (AC-3) makes native HLS fail, and the page plays the MP4 stream instead."""
    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip("chromium is not installed (scripts/test installs it)")
    cases = [
        ("languages.mp4", "/hls/languages.mp4/index.m3u8"),
        ("flac.mkv", "/hls/flac.mkv/index.m3u8"),
        ("h264-ac3.mp4", "/mp4/h264-ac3.mp4"),  # /mp4 re-encodes AC-3 to AAC
    ]
    player = "document.getElementById('player')"
    async with chromium_tab(tmp_path) as tab:
        if not await tab.evaluate(
            "document.createElement('video').canPlayType('application/vnd.apple.mpegurl')"
        ):
            pytest.skip("this Chromium has no native HLS")
        for name, played in cases:
            await tab.call("Page.navigate", url=hls.http(f"watch/{name}?protocol=hls"))
            await tab.wait_for(f"location.pathname === '/watch/{name}'")
            state = await tab.wait_for(PLAYED_SECONDS.format(1.0), timeout=60)
            assert state["error"] is None and state["w"] > 0, (name, state)
            assert (await tab.evaluate(f"{player}.currentSrc")).endswith(played), name
            assert await tab.evaluate(f"{player}.webkitAudioDecodedByteCount") > 0, name
