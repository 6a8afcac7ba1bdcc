"""Recording live paths: ffmpeg publishes (H.264 with B-frames + AAC) to paths with ``record = true``;
the finished segments are complete MP4/Matroska files that hold exactly what was published, add up
to the whole stream, and are then served like any file (RTSP, the HTTP API). Frames from Python too."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

import streamd
from media.h264 import nal_type
from streamd.config import PathSettings
from tests.integration import gst
from tests.integration.conftest import ServerProcess, free_tcp_port, free_udp_pair, need, start_server
from tests.integration.source import (
    received_video_nals,
    source_audio_frames,
    source_video_frame_count,
    source_video_nals,
)
from tests.mediagen import make_h264_aac_mp4
from tests.waiting import wait_until

pytestmark = pytest.mark.integration

SECONDS, FPS, SEGMENT = 4, 25, 1
NAME = re.compile(r"\d{4}-\d\d-\d\d_\d\d-\d\d-\d\d(_\d+)?\.(mp4|mkv)")
CONFIG = """
[paths."live/cam"]
record = true
record_segment = 1

[paths."live/mkv"]
record = true
record_segment = 1
record_format = "mkv"

[paths."live/gst"]
record = true
record_segment = 1

[paths."live/plain"]
record = false
"""


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    need("ffmpeg")
    folder = tmp_path_factory.mktemp("recording-source")
    # B-frames, a keyframe every second: 1 s segments cut at 1, 2, 3 s
    return make_h264_aac_mp4(folder / "bframes.mp4", seconds=SECONDS, bframes=True, gop=FPS, fps=FPS)


@pytest.fixture(scope="module")
def recording_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    need("ffprobe")
    tmp = tmp_path_factory.mktemp("recording-server")
    config = tmp / "streamd.toml"
    config.write_text(CONFIG)
    media = tmp / "media"
    media.mkdir()
    proc = start_server(media, tmp, "--config", str(config))
    yield proc
    proc.stop()


def publish(
    server: ServerProcess,
    clip: Path,
    path: str,
    transport: str,
    while_live: Callable[[], None] | None = None,
) -> None:
    """ffmpeg publishes the whole clip in real time, then leaves; ``while_live`` runs meanwhile."""
    publisher = subprocess.Popen(
        ["ffmpeg", "-nostdin", "-loglevel", "error", "-re", "-i", str(clip), "-c", "copy",
         "-f", "rtsp", "-rtsp_transport", transport, server.url(path)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        if while_live is not None:
            wait_until(
                lambda: any(p["name"] == path for p in server.api("paths?limit=1000")["paths"]), "live"
            )
            while_live()
        _, err = publisher.communicate(timeout=60)
        assert publisher.returncode == 0, err
    finally:
        if publisher.poll() is None:
            publisher.kill()
            publisher.wait()


def wait_recorded(server: ServerProcess, path: str, before: int) -> None:
    marker = f"{path}: recording ended"
    deadline = time.monotonic() + 20
    while server.log().count(marker) == before and time.monotonic() < deadline:
        time.sleep(0.1)
    assert server.log().count(marker) > before, server.log()[-3000:]


def ffprobe(target: str, *entries: str) -> list[dict[str, str]]:
    result = subprocess.run(
        ["ffprobe", "-v", "error", "-count_frames", "-show_entries", "stream=" + ",".join(entries),
         "-of", "json", target],
        check=True, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    return json.loads(result.stdout)["streams"]


def check_segments(files: list[Path], clip: Path) -> None:
    """Segments in order hold the published stream from its first keyframe on, bit-exact."""
    assert len(files) >= 3, files
    assert all(NAME.fullmatch(f.name) for f in files)
    recorded: list[bytes] = []
    frames = 0
    total = 0.0
    for i, file in enumerate(files):
        video, audio = ffprobe(str(file), "codec_name,width,height,nb_read_frames,start_time,duration")
        assert video["codec_name"] == "h264" and (video["width"], video["height"]) == (320, 240)
        assert audio["codec_name"] == "aac"
        assert abs(float(video["start_time"])) < 0.1, "each segment starts near 0"
        assert abs(float(audio["start_time"]) - float(video["start_time"])) < 0.1, "audio in step"
        nals = source_video_nals(file)
        assert next(nal_type(n) for n in nals if nal_type(n) != 6) == 5, "each segment starts with a keyframe"
        recorded += nals
        count = int(video["nb_read_frames"])
        if "duration" in video:  # MP4 (Matroska has no per-stream duration): ends with its last frame
            assert abs(float(video["duration"]) - count / FPS) < 0.005
        assert count == source_video_frame_count(file)
        frames += count
        seconds = count / FPS
        total += seconds
        if i < len(files) - 1:
            assert SEGMENT <= seconds <= SEGMENT + 1, f"{file.name}: {seconds} s"
    published = source_video_nals(clip)
    assert recorded == published, "the segments' NAL units are the published ones"
    assert frames == source_video_frame_count(clip) == SECONDS * FPS
    assert abs(total - SECONDS) < 0.05
    audio_frames = sum(len(source_audio_frames(f)) for f in files)
    assert abs(audio_frames - len(source_audio_frames(clip))) <= 2 * len(files)


def test_ffmpeg_publish_recorded_to_mp4_segments_served_as_files(
    recording_server: ServerProcess, clip: Path, tmp_path: Path
) -> None:
    folder = recording_server.media / "recordings" / "live" / "cam"
    before = recording_server.log().count("live/cam: recording ended")

    def api_says_recording() -> None:
        url = recording_server.http("api/v1/paths?limit=1000")
        paths = json.loads(urllib.request.urlopen(url, timeout=30).read())["paths"]
        assert next(p for p in paths if p["name"] == "live/cam")["recording"] is True
        page = urllib.request.urlopen(recording_server.http(""), timeout=30).read().decode()
        row = next(line for line in page.split("<tr>") if ">live/cam<" in line)
        assert "● recording" in row

    publish(recording_server, clip, "live/cam", "tcp", api_says_recording)
    wait_recorded(recording_server, "live/cam", before)
    assert not list(folder.glob("*.part")), "no half-written file left"
    files = sorted(folder.glob("*.mp4"))
    check_segments(files, clip)
    for file in files:  # faststart: the index before the media, for progressive download
        boxes = top_level_boxes(file.read_bytes())
        assert boxes.index(b"moov") < boxes.index(b"mdat"), boxes

    # a finished segment is an on-demand path like any file: RTSP plays it bit-exact ...
    name = f"recordings/live/cam/{files[1].name}"
    out = tmp_path / "v.h264"
    subprocess.run(
        ["ffmpeg", "-nostdin", "-loglevel", "error", "-rtsp_transport", "tcp",
         "-i", recording_server.url(name), "-map", "0:v", "-c", "copy", "-f", "h264", "-y", str(out)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    assert received_video_nals(out) == source_video_nals(files[1])
    # ... and the HTTP API lists the finished ones
    with urllib.request.urlopen(recording_server.http("api/v1/paths?limit=1000"), timeout=30) as response:
        listed = {p["name"] for p in json.load(response)["paths"]}
    assert {f"recordings/live/cam/{f.name}" for f in files} <= listed
    assert not any(n.endswith(".part") for n in listed)


def test_ffmpeg_publish_over_udp_recorded_to_matroska(recording_server: ServerProcess, clip: Path) -> None:
    folder = recording_server.media / "recordings" / "live" / "mkv"
    before = recording_server.log().count("live/mkv: recording ended")
    # meanwhile, a path with record = false (or none) is published: it writes nothing
    with ThreadPoolExecutor(2) as pool:
        plain = pool.submit(publish, recording_server, clip, "live/plain", "tcp")
        publish(recording_server, clip, "live/mkv", "udp")
        plain.result()
    wait_recorded(recording_server, "live/mkv", before)
    assert not list(folder.glob("*.part"))
    check_segments(sorted(folder.glob("*.mkv")), clip)
    assert not (recording_server.media / "recordings" / "live" / "plain").exists()


def test_python_frames_recorded(tmp_path: Path) -> None:
    need("ffprobe")
    W, H, RATE = 320, 180, 48000
    with streamd.serve_in_thread(
        host="127.0.0.1",
        rtsp_port=free_tcp_port(),
        rtp_port=free_udp_pair(),
        media=tmp_path,
        paths={"live/sim": PathSettings(record=True, record_segment=1)},
    ) as server:
        publisher = server.publish("live/sim", W, H, FPS, sample_rate=RATE)
        start = time.monotonic()
        for n in range(int(2.5 * FPS)):
            frame = np.zeros((H, W, 3), np.uint8)
            frame[:, (n * 4) % W] = 255
            publisher.send(frame)
            publisher.send_audio(np.full((RATE // FPS, 2), 0.05 * np.sin(n), np.float32))
            time.sleep(max(0.0, start + (n + 1) / FPS - time.monotonic()))
        publisher.close()
        encoded = publisher.frames_encoded
    # stopping the server waited for the files to be finished
    folder = tmp_path / "recordings" / "live" / "sim"
    assert not list(folder.glob("*.part"))
    files = sorted(folder.glob("*.mp4"))
    assert len(files) >= 2, files
    frames = 0
    for file in files:
        video, audio = ffprobe(str(file), "codec_name,width,height,nb_read_frames")
        assert (video["codec_name"], video["width"], video["height"]) == ("h264", W, H)
        assert audio["codec_name"] == "aac" and int(audio["nb_read_frames"]) > 0
        frames += int(video["nb_read_frames"])
    assert frames == encoded


def test_gstreamer_publish_recorded_with_its_latm_audio_taken_apart(
    recording_server: ServerProcess, clip: Path
) -> None:
    """rtspclientsink sends AAC as MP4A-LATM, which streamd takes apart into AAC frames: both
    tracks are recorded, bit-exact."""
    need("gst-launch-1.0")
    folder = recording_server.media / "recordings" / "live" / "gst"
    before = recording_server.log().count("live/gst: recording ended")
    pipeline = (
        f"filesrc location={clip} ! qtdemux name=d d.video_0 ! queue ! h264parse ! "
        f"rtspclientsink name=s location={recording_server.url('live/gst')} protocols=tcp "
        "d.audio_0 ! queue ! aacparse ! s."
    )
    gst.publish(pipeline, streams=2)  # in real time; stopped if it stays connected after sending all
    wait_recorded(recording_server, "live/gst", before)
    files = sorted(folder.glob("*.mp4"))
    assert len(files) >= 3 and not list(folder.glob("*.part"))
    video: list[bytes] = []
    audio: list[bytes] = []
    for file in files:
        streams = ffprobe(str(file), "codec_name,nb_read_frames")
        assert sorted(s["codec_name"] for s in streams) == ["aac", "h264"]
        video += source_video_nals(file)
        audio += source_audio_frames(file)
    assert video == source_video_nals(clip)
    sent = source_audio_frames(clip)
    if audio[:1] == sent[:1]:
        # rtspclientsink stamps the clip's first two AAC frames with one RTP timestamp; a file cannot
        # hold two frames at one instant, so a recording that began with the first leaves out the
        # second (and says so). Whether it began before it depends on arrival order, i.e. on load.
        assert audio[1:2] == sent[2:3], "only the twin of the first frame is left out"
        assert "live/gst: recording: 0 units dropped (queue full), 1 with timestamps going back" in (
            recording_server.log()
        )
        audio, sent = audio[1:], sent[2:]
    assert len(audio) >= 0.9 * len(sent) and is_contiguous_run(audio, sent)


def top_level_boxes(data: bytes) -> list[bytes]:
    """The types of an MP4 file's top-level boxes, in order."""
    boxes, pos = [], 0
    while pos + 8 <= len(data):
        size = int.from_bytes(data[pos : pos + 4], "big")
        if size == 1:
            size = int.from_bytes(data[pos + 8 : pos + 16], "big")
        boxes.append(data[pos + 4 : pos + 8])
        if size < 8:
            break
        pos += size
    return boxes


def is_contiguous_run(got: list[bytes], source: list[bytes]) -> bool:
    starts = [i for i, frame in enumerate(source) if frame == got[0]] if got else []
    return any(source[i : i + len(got)] == got for i in starts)


def test_server_stop_finishes_the_file_being_written(clip: Path, tmp_path: Path) -> None:
    need("ffprobe")
    config = tmp_path / "streamd.toml"
    config.write_text('[paths."live/cam"]\nrecord = true\nrecord_segment = 60\n')
    (tmp_path / "media").mkdir()
    server = start_server(tmp_path / "media", tmp_path, "--no-http", "--config", str(config))
    publisher = subprocess.Popen(  # looped: still publishing, however slowly the test goes on
        ["ffmpeg", "-nostdin", "-loglevel", "error", "-re", "-stream_loop", "-1", "-i", str(clip),
         "-c", "copy", "-f", "rtsp", "-rtsp_transport", "tcp", server.url("live/cam")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        folder = tmp_path / "media" / "recordings" / "live" / "cam"
        wait_until(lambda: list(folder.glob("*.part")), "a file being written")
        time.sleep(2)  # a part of the clip is written, the file still open
        assert list(folder.glob("*.part"))
        assert server.stop() == 0  # SIGTERM: the server finishes the file before it exits
    finally:
        publisher.kill()
        publisher.wait()
    assert not list(folder.glob("*.part"))
    (file,) = folder.glob("*.mp4")
    video, _audio = ffprobe(str(file), "codec_name,nb_read_frames,duration")
    assert int(video["nb_read_frames"]) >= 40 and float(video["duration"]) >= 1.5
    recorded = source_video_nals(file)
    assert recorded == (source_video_nals(clip) * 10)[: len(recorded)]


def test_relayed_path_recorded_while_pulled(clip: Path, tmp_path: Path) -> None:
    """B relays a file from A on demand with record = true: recorded while a reader pulls it."""
    need("ffmpeg")
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    shutil.copy(clip, tmp_path / "a" / "clip.mp4")
    a = start_server(tmp_path / "a", tmp_path, "--no-http")
    b = None
    try:
        config = tmp_path / "b.toml"
        config.write_text(
            f'[paths."relay/cam"]\nsource = "{a.url("clip.mp4")}"\nsource_close_after = 1\n'
            'record = true\nrecord_segment = 1\nrecord_format = "mkv"\n'
        )
        b = start_server(tmp_path / "b", tmp_path, "--no-http", "--config", str(config))
        subprocess.run(
            ["ffmpeg", "-nostdin", "-loglevel", "error", "-rtsp_transport", "tcp", "-i", b.url("relay/cam"),
             "-t", "3", "-map", "0:v", "-c", "copy", "-f", "null", "-"],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip
        wait_recorded(b, "relay/cam", 0)  # the reader left, the relay let go: the recording ends
        folder = tmp_path / "b" / "recordings" / "relay" / "cam"
        files = sorted(folder.glob("*.mkv"))
        assert len(files) >= 2 and not list(folder.glob("*.part"))
        recorded = [n for f in files for n in source_video_nals(f)]
        source = source_video_nals(clip)
        start = source.index(recorded[0])
        assert recorded == source[start : start + len(recorded)], "a contiguous run of the source"
        assert len(recorded) >= len(source) // 2
    finally:
        for proc in (b, a):
            if proc is not None:
                proc.stop()
