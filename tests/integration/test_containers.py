"""Every common container is served: ffprobe sees the streamable tracks over RTSP, and where the
video is H.264, ffmpeg ``-c copy`` receives the file's NAL units bit-exact.

Files are tiny (1 s, 160x120) and generated with the ffmpeg CLI; the clients run in parallel.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests import mediagen
from tests.integration.conftest import ARTIFACTS, ServerProcess, need, start_server
from tests.integration.source import received_video_nals, source_video_nals
from tests.rtsp_client import RawRtspClient

pytestmark = pytest.mark.integration

H264 = ("-c:v", "libx264", "-preset", "veryfast", "-bf", "2", "-g", "5")
AAC = ("-c:a", "aac")

# name -> (ffmpeg arguments, video?, audio tracks, codecs ffprobe must see over RTSP)
CONTAINERS: dict[str, tuple[tuple[str, ...], bool, int, tuple[str, ...]]] = {
    "faststart.mp4": ((*H264, *AAC, "-movflags", "+faststart"), True, 1, ("h264", "aac")),
    "moov-at-end.mp4": ((*H264, *AAC), True, 1, ("h264", "aac")),
    "fragmented.mp4": ((*H264, *AAC, "-movflags", "frag_keyframe+empty_moov"), True, 1, ("h264", "aac")),
    "clip.mov": ((*H264, *AAC), True, 1, ("h264", "aac")),
    "song.m4a": (AAC, False, 1, ("aac",)),
    "clip.mkv": ((*H264, *AAC), True, 1, ("h264", "aac")),
    "vp8.webm": (("-c:v", "libvpx", "-c:a", "libopus"), True, 1, ("vp8", "opus")),
    "vp9.webm": (("-c:v", "libvpx-vp9", "-c:a", "libopus"), True, 1, ("vp9", "opus")),
    "clip.ts": ((*H264, *AAC), True, 1, ("h264", "aac")),
    "clip.flv": ((*H264, *AAC), True, 1, ("h264", "aac")),
    "clip.avi": ((*H264, "-c:a", "libmp3lame"), True, 1, ("h264", "mp3")),
    "song.ogg": (("-c:a", "libopus"), False, 1, ("opus",)),
    "raw.h264": (H264, True, 0, ("h264",)),
    "raw.h265": (("-c:v", "libx265", "-x265-params", "log-level=error:keyint=5"), True, 0, ("hevc",)),
    "raw.aac": (AAC, False, 1, ("aac",)),
    "raw.ac3": (("-c:a", "ac3"), False, 1, ("ac3",)),
    "languages.mkv": (
        (*H264, *AAC, "-metadata:s:a:0", "language=eng", "-metadata:s:a:1", "language=fra"),
        True,
        2,
        ("h264", "aac", "aac"),
    ),
}


@pytest.fixture(scope="module")
def container_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    need("ffmpeg")
    media = tmp_path_factory.mktemp("containers")
    with ThreadPoolExecutor(4) as pool:
        jobs = [
            pool.submit(mediagen.make_with_ffmpeg, media / name, *args, video=video, audio_tracks=audio)
            for name, (args, video, audio, _codecs) in CONTAINERS.items()
        ]
        for job in jobs:
            job.result()
    proc = start_server(media, tmp_path_factory.mktemp("container-server"))
    yield proc
    code = proc.stop()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shutil.copy(proc.log_path, ARTIFACTS / f"containers-{proc.log_path.name}")
    assert "Traceback" not in proc.log(), proc.log()
    assert code == 0, proc.log()


def ffprobe_codecs(url: str) -> list[str]:
    result = subprocess.run(
        ["ffprobe", "-v", "error", "-rtsp_transport", "tcp", "-show_streams", "-of", "json", url],
        capture_output=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    return [s["codec_name"] for s in json.loads(result.stdout)["streams"]]


def test_every_container_is_described_with_its_tracks(container_server: ServerProcess) -> None:
    names = list(CONTAINERS)
    with ThreadPoolExecutor(4) as pool:
        found = dict(
            zip(names, pool.map(lambda n: ffprobe_codecs(container_server.url(n)), names), strict=True)
        )
    assert found == {name: list(spec[3]) for name, spec in CONTAINERS.items()}


H264_FILES = [n for n, spec in CONTAINERS.items() if spec[3][0] == "h264"]


def test_h264_arrives_bit_exact_from_every_container(container_server: ServerProcess, tmp_path: Path) -> None:
    def receive(name: str) -> tuple[str, list[bytes]]:
        out = tmp_path / f"{name}.h264"
        url = container_server.url(name)
        subprocess.run(
            [
                "ffmpeg",
                "-nostdin",
                "-loglevel",
                "error",
                "-rtsp_transport",
                "tcp",
                "-i",
                url,
                "-map",
                "0:v",
                "-c",
                "copy",
                "-f",
                "h264",
                "-y",
                str(out),
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )
        return name, received_video_nals(out)

    with ThreadPoolExecutor(4) as pool:
        received = dict(pool.map(receive, H264_FILES))
    for name in H264_FILES:
        assert received[name] == source_video_nals(container_server.media / name), name


def test_audio_tracks_carry_their_language_and_play_alone(container_server: ServerProcess) -> None:
    async def scenario() -> tuple[str, list[int]]:
        client = await RawRtspClient("127.0.0.1", container_server.port).connect()
        try:
            url = client.url("languages.mkv")
            sdp = (await client.request("DESCRIBE", url, {"Accept": "application/sdp"})).body.decode()
            transport = "RTP/AVP/TCP;unicast;interleaved=0-1"
            setup = await client.request("SETUP", f"{url}/trackID=2", {"Transport": transport})
            assert setup.status == 200
            assert (await client.request("PLAY", url, {"Range": "npt=0-"})).status == 200
            await asyncio.wait_for(_until_bye(client), 15)
            return sdp, sorted({channel for _t, channel, _p in client.received.frames})
        finally:
            await client.close()

    sdp, channels = asyncio.run(scenario())
    sections = sdp.split("m=")[1:]
    audio = [s for s in sections if s.startswith("audio")]
    assert [("a=lang:eng" in s, "a=lang:fra" in s) for s in audio] == [(True, False), (False, True)]
    assert "a=control:trackID=2" in audio[1]
    assert channels == [0, 1]  # RTP and RTCP of the one track set up, nothing else


async def _until_bye(client: RawRtspClient) -> None:
    while not client.received.got_bye(1):
        await asyncio.sleep(0.05)
