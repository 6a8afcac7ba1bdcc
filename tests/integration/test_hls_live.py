"""Live paths as LL-HLS with real players: ffmpeg publishes over RTSP, ffmpeg reads the HLS
playlist and gets the published NAL units and AAC frames unchanged; blocking playlist reloads,
preload hints, delta updates and the 400/404 rules with an HTTP client (aiohttp); the path going
offline answers every request still waiting; the m3u8 package parses every playlist."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import aiohttp
import m3u8
import pytest
from multidict import CIMultiDict

from media.h264 import nal_type
from tests.integration.chromium import CHROMIUM, chromium_tab
from tests.integration.conftest import ARTIFACTS, ServerProcess, need, start_server
from tests.integration.hlsjs import PLAY_WITH_HLS_JS, PLAYED, hls_js_path, load_hls_js
from tests.integration.source import (
    complete_adts_frames,
    received_audio_frames,
    received_video_nals,
    source_audio_frames,
    source_video_nals,
)
from tests.integration.test_live import Publisher, is_subsequence_start
from tests.mediagen import make_live_clip
from tests.waiting import wait_until

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def hls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    need("ffmpeg")
    media = tmp_path_factory.mktemp("hls-live-media")
    make_live_clip(media / "clip.mp4")
    proc = start_server(media, tmp_path_factory.mktemp("hls-live-server"))
    yield proc
    proc.stop()


def whole_adts_frames(path: Path) -> None:
    """Cut ``path`` (ADTS) after its last whole frame."""
    data, end = path.read_bytes(), 0
    while end + 7 <= len(data) and data[end] == 0xFF:
        length = ((data[end + 3] & 0x03) << 11) | (data[end + 4] << 3) | (data[end + 5] >> 5)
        if length < 7 or end + length > len(data):
            break
        end += length
    path.write_bytes(data[:end])


def next_part(playlist: m3u8.M3U8) -> tuple[int, int]:
    """(MSN, part index) of the part being made, from the playlist as a player reads it."""
    complete = [s for s in playlist.segments if s.uri]
    trailing = playlist.segments[-1].parts if playlist.segments and not playlist.segments[-1].uri else []
    return playlist.media_sequence + len(complete), len(trailing)


def part_number(uri: str) -> int:
    """A part's number in the stream, from its URI (``<stream>-part<n>.m4s``)."""
    match = re.fullmatch(r"[0-9a-f]{8}-part([0-9]+)\.m4s", uri)
    assert match, uri
    return int(match.group(1))


def reaches_part(playlist: m3u8.M3U8, number: int) -> bool:
    """Whether ``playlist`` lists part ``number`` or a later one: what a blocking reload for that part
    is owed (RFC 8216bis 6.2.5.2, "or later"). Not "lists that part": parts are listed for the last
    three target durations only, and a loaded machine may send the reload after the part left them
    (a publisher that fell behind catches up in a burst of parts)."""
    listed = [part_number(p.uri) for s in playlist.segments for p in s.parts]
    return bool(listed) and max(listed) >= number


def playlist_url(server: ServerProcess, path: str, query: str = "") -> str:
    return server.http(f"hls/{path}/main/media.m3u8") + query


def test_ffmpeg_reads_the_live_playlist_bit_exact(hls_server: ServerProcess, tmp_path: Path) -> None:
    path = "live/hls-ffmpeg"
    publisher = Publisher(hls_server, path, loop=True)
    try:
        index = m3u8.load(hls_server.http(f"hls/{path}/index.m3u8"))
        assert index.is_variant and index.playlists[0].uri == "main/media.m3u8"
        assert index.playlists[0].stream_info.codecs.startswith("avc1.")
        video, audio = tmp_path / "v.h264", tmp_path / "a.aac"
        # -flush_packets 1: ffmpeg 5.1 otherwise keeps these outputs in memory until it exits, and the
        # test would wait ~30 s of real-time reading for the first 150 frames to show on disk
        reader = subprocess.Popen(
            ["ffmpeg", "-nostdin", "-loglevel", "error", "-i", hls_server.http(f"hls/{path}/index.m3u8"),
             "-map", "0:v", "-c", "copy", "-f", "h264", "-flush_packets", "1", "-y", str(video),
             "-map", "0:a", "-c", "copy", "-f", "adts", "-flush_packets", "1", "-y", str(audio)],
            stderr=subprocess.PIPE,
        )  # fmt: skip
        try:
            wait_until(lambda: complete_adts_frames(audio) >= 150, "150 AAC frames through HLS", timeout=60)
        finally:
            reader.terminate()
            try:
                reader.communicate(timeout=10)
            except subprocess.TimeoutExpired:  # blocked in an HLS read, ffmpeg may not heed SIGTERM
                reader.kill()
                reader.communicate(timeout=10)
        whole_adts_frames(audio)  # a killed ffmpeg may leave half a frame at the end
    finally:
        publisher.stop()
    source = hls_server.media / "clip.mp4"
    got = received_video_nals(video)
    # starts on a keyframe: past any SEI (the clip's first access unit is x264's SEI + IDR), the
    # IDR slice or a parameter set
    assert next(t for t in map(nal_type, got) if t != 6) in (5, 7), "starts on a keyframe"
    looped = source_video_nals(source) * 3  # the publisher loops the clip
    assert len(got) >= 50 and is_subsequence_start(got[: len(got) // 2], looped)
    aac = received_audio_frames(audio)
    assert len(aac) >= 100 and is_subsequence_start(aac[:100], source_audio_frames(source) * 3)


async def get(
    session: aiohttp.ClientSession, url: str, **headers: str
) -> tuple[int, bytes, CIMultiDict[str]]:
    async with session.get(url, headers=headers) as response:
        return response.status, await response.read(), CIMultiDict(response.headers)


async def refused_as_too_far(
    session: aiohttp.ClientSession, server: ServerProcess, path: str, query: Callable[[int, int], str]
) -> None:
    """``query(msn, part)`` of the part being made asks too far ahead: 400. Tried again from a fresh
    playlist when the stream overtook the request on its way (a loaded machine): a 200 is right then,
    and only then (the answer is past the requested segment), or a 503 if that blocked too long."""
    for _ in range(20):
        status, body, _ = await get(session, playlist_url(server, path))
        assert status == 200, body
        asked = query(*next_part(m3u8.loads(body.decode())))
        status, body, _ = await get(session, playlist_url(server, path, asked))
        if status == 400:
            return
        if status == 503:  # overtaken to within two segments: it blocked, and the segment came late
            continue
        assert status == 200, (asked, body)
        requested = int(re.search(r"_HLS_msn=([0-9]+)", asked).group(1))  # type: ignore[union-attr]
        assert next_part(m3u8.loads(body.decode()))[0] > requested, (asked, body)
    raise AssertionError(f"the stream overtook every request too far ahead ({asked})")


async def test_blocking_reload_preload_hint_and_delta_update(hls_server: ServerProcess) -> None:
    path = "live/hls-blocking"
    publisher = await asyncio.to_thread(Publisher, hls_server, path, loop=True)
    try:
        async with aiohttp.ClientSession() as session:
            status, body, headers = await get(session, playlist_url(hls_server, path))
            assert status == 200, body
            assert headers["Content-Type"] == "application/vnd.apple.mpegurl"
            assert headers["Cache-Control"] == "public, max-age=1"
            playlist = m3u8.loads(body.decode())
            assert playlist.server_control.can_block_reload == "YES"
            hint = playlist.preload_hint.uri
            msn, part = next_part(playlist)
            # the hinted part: the request waits until the part is complete, then it is immutable
            status, data, headers = await get(session, hls_server.http(f"hls/{path}/main/{hint}"))
            assert status == 200 and data[4:8] == b"moof"
            assert headers["Cache-Control"] == "public, max-age=31536000, immutable"
            etag = headers["ETag"]
            status, _, _ = await get(
                session, hls_server.http(f"hls/{path}/main/{hint}"), **{"If-None-Match": etag}
            )
            assert status == 304
            # a blocking reload for the part after it returns a playlist listing that part
            query = f"?_HLS_msn={msn}&_HLS_part={part + 1}"
            status, body, headers = await get(session, playlist_url(hls_server, path, query))
            assert status == 200
            assert headers["Cache-Control"].startswith("public, max-age=")
            blocked = m3u8.loads(body.decode())
            name, number = re.fullmatch(r"([0-9a-f]{8})-part([0-9]+)\.m4s", hint).groups()  # type: ignore[union-attr]
            assert reaches_part(blocked, int(number) + 1)
            # the rules for directives (RFC 8216bis 6.2.5.2)
            for bad in ("?_HLS_part=1", "?_HLS_msn=x", "?_HLS_msn=1&_HLS_part=-1", "?_HLS_skip=NO"):
                status, body, _ = await get(session, playlist_url(hls_server, path, bad))
                assert status == 400, (bad, body)
            await refused_as_too_far(session, hls_server, path, lambda msn, _: f"?_HLS_msn={msn + 3}")
            await refused_as_too_far(
                session, hls_server, path, lambda msn, part: f"?_HLS_msn={msn}&_HLS_part={part + 40}"
            )
            # a part far past the hinted one: 404 at once (not the hint, so nothing waits for it)
            status, _, _ = await get(
                session, hls_server.http(f"hls/{path}/main/{name}-part{int(number) + 100_000}.m4s")
            )
            assert status == 404
            status, _, _ = await get(session, hls_server.http(f"hls/{path}/main/00000000-0.m4s"))
            assert status == 404  # another publishing's object
            # a delta update parses and skips nothing yet (the stream is younger than 6 target durations)
            status, body, _ = await get(session, playlist_url(hls_server, path, "?_HLS_skip=YES"))
            assert status == 200 and m3u8.loads(body.decode()).segments
    finally:
        publisher.stop()


async def test_ending_path_answers_blocked_requests_with_endlist(hls_server: ServerProcess) -> None:
    path = "live/hls-offline"
    publisher = await asyncio.to_thread(Publisher, hls_server, path, loop=True)
    try:
        async with aiohttp.ClientSession() as session:
            status, body, _ = await get(session, playlist_url(hls_server, path))
            assert status == 200
            playlist = m3u8.loads(body.decode())
            msn, _ = next_part(playlist)
            waiters = [
                asyncio.ensure_future(
                    get(session, playlist_url(hls_server, path, f"?_HLS_msn={msn + 1}&_HLS_part=3"))
                )
                for _ in range(20)
            ]
            await asyncio.to_thread(publisher.stop)
            answers = await asyncio.wait_for(asyncio.gather(*waiters), 15)
            for status, body, _ in answers:
                assert status == 200, body
            ended = [m3u8.loads(body.decode()) for _, body, _ in answers]
            assert any(p.is_endlist for p in ended)
    finally:
        publisher.stop()


async def test_chromium_plays_a_live_path_with_hls_js_and_natively(
    hls_server: ServerProcess, tmp_path: Path
) -> None:
    """hls.js (MSE) in low-latency mode, and Chromium's own HLS player where ``canPlayType`` says
    it has one: ``currentTime`` advances in both."""
    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip("chromium is not installed (scripts/test installs it)")
    hls_js_path()
    path = "live/hls-chromium"
    publisher = await asyncio.to_thread(Publisher, hls_server, path, loop=True)
    url = f"/hls/{path}/index.m3u8"
    try:
        async with chromium_tab(tmp_path) as tab:
            await tab.call("Page.navigate", url=hls_server.http("login"))
            await tab.wait_for("document.readyState === 'complete'")
            await load_hls_js(tab)
            await tab.evaluate(PLAY_WITH_HLS_JS.format(url=url))
            first = await tab.wait_for(PLAYED.format(id="hlsjs", seconds=1), timeout=40)
            later = await tab.wait_for(PLAYED.format(id="hlsjs", seconds=first["t"] + 2), timeout=30)
            errors = await tab.evaluate("window.hlsErrors")
            assert later["error"] is None and later["w"] == 320, (later, errors)
            assert not [e for e in errors if "fatal" in e], errors
            latency = await tab.evaluate("window.hls.latency")
            assert latency is not None and latency < 10, latency
            # rewind within the DVR window: it plays on from there
            back = await tab.evaluate(
                "(() => { const v = document.getElementById('hlsjs'); const s = v.seekable;"
                " const to = Math.max(s.start(0), v.currentTime - 3); v.currentTime = to; return to })()"
            )
            landed = await tab.wait_for(
                "(() => { const v = document.getElementById('hlsjs');"
                " return !v.seeking && v.readyState >= 3 && {t: v.currentTime} })()",
                timeout=30,
            )
            assert back - 0.5 <= landed["t"] < back + 2.5, (back, landed)  # where it was asked to go
            await tab.wait_for(PLAYED.format(id="hlsjs", seconds=landed["t"] + 1), timeout=30)
            native = await tab.evaluate(
                "document.createElement('video').canPlayType('application/vnd.apple.mpegurl')"
            )
            if native:
                await tab.evaluate(
                    "(() => { const v = document.createElement('video'); v.id = 'native'; v.muted = true;"
                    f" v.autoplay = true; v.src = {url!r}; document.body.appendChild(v);"
                    " v.play().catch(() => {}); return true })()"
                )
                state = await tab.wait_for(PLAYED.format(id="native", seconds=2), timeout=40)
                assert state["error"] is None, state
                # the watch page plays it natively too (``?protocol=hls``: WebRTC is its default)
                await tab.call("Page.navigate", url=hls_server.http(f"watch/{path}?protocol=hls"))
                await tab.wait_for(f"location.pathname === '/watch/{path}'")
                state = await tab.wait_for(PLAYED.format(id="player", seconds=2), timeout=40)
                assert state["error"] is None, state
                assert (await tab.evaluate("document.getElementById('player').currentSrc")).endswith(url)
            await tab.screenshot(ARTIFACTS / "hls-live-chromium.png")
    finally:
        await asyncio.to_thread(publisher.stop)


def test_recorded_path_serves_old_segments_from_its_recording(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    """A recorded path keeps its segments listed past the in-memory window (10 s here, the least
    allowed): the old ones come back from the recorder's files, with the published NAL units."""
    media = tmp_path_factory.mktemp("hls-recorded-media")
    make_live_clip(media / "clip.mp4")
    config = tmp_path / "streamd.toml"
    config.write_text('hls_dvr_seconds = 10\n[paths."live/rec"]\nrecord = true\nrecord_segment = 1\n')
    server = start_server(media, tmp_path, "--config", str(config))
    try:
        publisher = Publisher(server, "live/rec", loop=True)
        try:
            url = playlist_url(server, "live/rec")

            def listed() -> float:
                return sum(s.duration for s in m3u8.load(url).segments if s.uri)

            # past 10 s in memory plus a 1 s recording file (closed well before its segment leaves
            # memory): the first segments come from the recording
            wait_until(lambda: listed() > 12, "12 s of segments listed", timeout=90)
            playlist = m3u8.load(url)
        finally:
            publisher.stop()
        complete = [s for s in playlist.segments if s.uri]
        assert playlist.media_sequence == 0 and sum(s.duration for s in complete) > 11
        init = urllib.request.urlopen(server.http(f"hls/live/rec/main/{playlist.segment_map[0].uri}")).read()
        first = urllib.request.urlopen(server.http(f"hls/live/rec/main/{complete[0].uri}")).read()
        assert b"moof" in first[:16]
        path = tmp_path / "old.mp4"
        path.write_bytes(init + first)
        got = received_video_nals_mp4(path)
        # starts on a keyframe: its first NAL unit past any SEI is the IDR slice or a parameter set
        # (the clip's first access unit is x264's SEI + IDR, which the recording begins with when it
        # starts at the publisher's first frame)
        assert len(got) >= 25 and next(t for t in map(nal_type, got) if t != 6) in (5, 7)
        assert is_subsequence_start(got, source_video_nals(media / "clip.mp4") * 3)
    finally:
        server.stop()


def received_video_nals_mp4(path: Path) -> list[bytes]:
    from tests.integration.source import comparable
    from tests.unit.test_recorder import file_units

    return comparable([n for au in file_units(path, "video") for n in au.nal_units])
