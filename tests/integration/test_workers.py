"""``streamd serve --workers 2``: nothing breaks across workers (issue 18).

The kernel spreads connections over the workers; :mod:`tests.integration.workers_pin` lets each
test choose which worker a client reaches, so every case is deterministic: publish on one worker
and read on the other, a tunnel's GET on one and POST on the other, a session used from the
other worker, the API and metrics asked of either, admin actions taken on either, a worker killed.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from media.h264 import nal_type
from tests.integration.conftest import ServerProcess, need, start_server
from tests.integration.source import (
    ffmpeg_copy,
    received_audio_frames,
    received_video_nals,
    source_audio_frames,
    source_video_nals,
)
from tests.integration.workers_pin import exchange, pinned, steer
from tests.mediagen import make_h264_aac_mp4, make_live_clip
from tests.waiting import wait_until

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def workers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    need("ffmpeg")
    media = tmp_path_factory.mktemp("workers-media")
    make_h264_aac_mp4(media / "bframes.mp4", seconds=2, bframes=True)
    make_live_clip(media / "clip.mp4")
    proc = start_server(media, tmp_path_factory.mktemp("workers-server"), "--workers", "2")
    wait_until(lambda: "all 2 workers ready" in proc.log(), "both workers ready", timeout=120)
    yield proc
    assert proc.stop() == 0
    assert "Traceback" not in proc.log(), proc.log()


def pin(server: ServerProcess, worker: int):
    return pinned(server.port, server.rtp_port, worker)


def http_on(server: ServerProcess, worker: int, path: str) -> tuple[int, bytes]:
    """An HTTP GET answered by ``worker`` (HTTP on the RTSP port, over a pinned connection)."""
    with pin(server, worker) as sock:
        status, _, body = exchange(sock, f"GET /{path} HTTP/1.1\nHost: 127.0.0.1\nConnection: close\n")
    return status, body


def sessions_on(server: ServerProcess, worker: int) -> list[dict]:
    status, body = http_on(server, worker, "api/v1/sessions")
    assert status == 200
    return json.loads(body)["sessions"]


def worker_pids(server: ServerProcess) -> dict[int, int]:
    """The latest pid of each worker, from the parent's log."""
    return {int(i): int(pid) for i, pid in re.findall(r"worker (\d+) \(pid (\d+)\) ready", server.log())}


class Publisher:
    """ffmpeg publishing the clip in real time, looping, through a connection to ``worker``."""

    def __init__(self, server: ServerProcess, path: str, worker: int) -> None:
        self.steering = steer(server.port, server.rtp_port, worker)
        self.process = subprocess.Popen(
            ["ffmpeg", "-nostdin", "-loglevel", "error", "-re", "-stream_loop", "-1",
             "-i", str(server.media / "clip.mp4"), "-c", "copy", "-f", "rtsp", "-rtsp_transport", "tcp",
             self.steering.url(path)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )  # fmt: skip
        wait_until(
            lambda: any(
                s["path"] == path and s["state"] == "recording" for s in server.api("sessions")["sessions"]
            ),
            f"{path} published",
        )

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)
        self.steering.close()


def test_each_worker_has_its_own_udp_pair_on_the_shared_rtsp_port(workers: ServerProcess) -> None:
    for worker in (0, 1):
        with pin(workers, worker):  # found by the server_port its SETUP answered: base + 2 x index
            pass
    assert len(worker_pids(workers)) == 2


def test_live_path_published_on_one_worker_is_read_bit_exact_on_the_other(
    workers: ServerProcess, tmp_path: Path
) -> None:
    path = "live/across"
    publisher = Publisher(workers, path, worker=0)
    try:
        with steer(workers.port, workers.rtp_port, 1) as reader:
            video, audio = tmp_path / "v.h264", tmp_path / "a.aac"
            ffmpeg_copy(["-rtsp_transport", "tcp", "-i", reader.url(path)], video, audio, 3)
        # one publisher per path over all workers: the other worker refuses a second one
        sdp = "v=0\no=- 0 0 IN IP4 127.0.0.1\ns=x\nc=IN IP4 127.0.0.1\nt=0 0\nm=video 0 RTP/AVP 96\n"
        sdp += "a=rtpmap:96 H264/90000\na=control:streamid=0\n"
        with pin(workers, 1) as sock:
            status, _, body = exchange(
                sock,
                f"ANNOUNCE {workers.url(path)} RTSP/1.0\nCSeq: 9\nContent-Type: application/sdp\n",
                sdp.replace("\n", "\r\n").encode(),
            )
        assert (status, body) == (403, b"busy\n")
    finally:
        publisher.stop()
    source = workers.media / "clip.mp4"
    got, want = received_video_nals(video), source_video_nals(source)
    assert nal_type(got[0]) == 5, "the reader starts on a keyframe"
    assert len(got) >= 50 and _run_of(got, want)
    frames = received_audio_frames(audio)
    assert len(frames) >= 100 and _run_of(frames, source_audio_frames(source))
    # the relay between the workers is not a session the API shows
    wait_until(lambda: not workers.api("sessions")["sessions"], "sessions gone")


def _run_of(got: list[bytes], source: list[bytes]) -> bool:
    """``got`` is a contiguous run of ``source`` (looped: the clip may wrap once)."""
    doubled = source + source
    return any(doubled[i : i + len(got)] == got for i, n in enumerate(doubled) if n == got[0])


def test_gstreamer_reads_from_the_worker_without_the_publisher(workers: ServerProcess) -> None:
    need("gst-launch-1.0")
    path = "live/gst"
    publisher = Publisher(workers, path, worker=1)
    try:
        with steer(workers.port, workers.rtp_port, 0) as reader:
            result = subprocess.run(
                ["gst-launch-1.0", "-q", "rtspsrc", f"location={reader.url(path)}", "protocols=tcp", "!",
                 "rtph264depay", "!", "h264parse", "!", "identity", "eos-after=40", "!", "fakesink"],
                capture_output=True, timeout=60,
            )  # fmt: skip
        assert result.returncode == 0, result.stderr.decode()[-500:]
    finally:
        publisher.stop()


def test_tunnel_halves_on_different_workers_are_joined(workers: ServerProcess, tmp_path: Path) -> None:
    # ffmpeg opens the GET first, then the POST: the GET reaches worker 0, the POST worker 1
    with steer(workers.port, workers.rtp_port, 0, 1) as tunnel:
        video, audio = tmp_path / "v.h264", tmp_path / "a.aac"
        ffmpeg_copy(["-rtsp_transport", "http", "-i", tunnel.url("bframes.mp4")], video, audio, 10)
    source = workers.media / "bframes.mp4"
    assert received_video_nals(video) == source_video_nals(source)
    assert len(received_audio_frames(audio)) >= len(source_audio_frames(source)) - 1
    assert re.search(r"\[worker 1\] tunnel \S+: its GET is on worker 0", workers.log())


def test_session_id_on_a_connection_to_the_other_worker_reaches_its_session(workers: ServerProcess) -> None:
    url = workers.url("bframes.mp4")
    with pin(workers, 0) as first:
        status, headers, _ = exchange(
            first, f"SETUP {url}/trackID=0 RTSP/1.0\nCSeq: 11\nTransport: RTP/AVP;unicast;client_port=9-10\n"
        )
        assert status == 200
        session = headers["session"].split(";")[0]
    with pin(workers, 1) as second:  # the UDP session's client comes back on another worker
        assert exchange(second, f"PLAY {url} RTSP/1.0\nCSeq: 12\nSession: {session}\n")[0] == 200
        (row,) = [s for s in workers.api("sessions")["sessions"] if s["id"] == session]
        assert (row["worker"], row["state"]) == (0, "playing")
        assert exchange(second, f"GET_PARAMETER {url} RTSP/1.0\nCSeq: 13\nSession: {session}\n")[0] == 200
        assert exchange(second, f"TEARDOWN {url} RTSP/1.0\nCSeq: 14\nSession: {session}\n")[0] == 200
    assert session not in workers.session_ids()
    with pin(workers, 1) as third:  # a session nobody has is still 454
        assert exchange(third, f"PLAY {url} RTSP/1.0\nCSeq: 1\nSession: {session}\n")[0] == 454


def test_api_metrics_and_index_show_every_worker_and_admin_actions_reach_all(workers: ServerProcess) -> None:
    url = workers.url("bframes.mp4")
    held = []
    for worker in (0, 1):
        sock = pin(workers, worker)
        status, headers, _ = exchange(
            sock, f"SETUP {url}/trackID=0 RTSP/1.0\nCSeq: 5\nTransport: RTP/AVP;unicast;client_port=9-10\n"
        )
        assert status == 200
        held.append((sock, headers["session"].split(";")[0]))
    try:
        for worker in (0, 1):
            rows = sessions_on(workers, worker)
            assert sorted(r["worker"] for r in rows) == [0, 1]
            status, metrics = http_on(workers, worker, "metrics")
            assert status == 200
            assert re.search(
                rb'streamd_sessions\{path="bframes.mp4",state="ready",transport="UDP"\} 2.0', metrics
            )
        # a move asked of worker 1 is obeyed by worker 0 (and the other way round when undone)
        request = urllib.request.Request(
            workers.http("api/v1/move/bframes.mp4"),
            data=json.dumps({"to": ["rtsp://elsewhere.example:554/bframes.mp4"]}).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        urllib.request.urlopen(request, timeout=30).close()
        for worker in (0, 1):
            with pinned(workers.port, workers.rtp_port, worker, probe="clip.mp4") as sock:
                status, headers, _ = exchange(sock, f"DESCRIBE {url} RTSP/1.0\nCSeq: 1\n")
                assert (status, headers["location"]) == (302, "rtsp://elsewhere.example:554/bframes.mp4")
    finally:
        undo = urllib.request.Request(
            workers.http("api/v1/move/bframes.mp4"),
            data=b'{"to": []}',
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        urllib.request.urlopen(undo, timeout=30).close()
        for sock, _ in held:
            sock.close()


def test_worker_killed_mid_stream(workers: ServerProcess, tmp_path: Path) -> None:
    """Its clients lose their streams (not hung), the path it published is free again, it is
    started again, and the other worker's sessions carry on: a file played there throughout gets
    every frame, to the file's end. (The restart may take longer than the 12 s file on a loaded
    machine, so the bystander is judged by what it received, not by still running then.)"""
    path = "live/killed"
    publisher = Publisher(workers, path, worker=0)
    bystander_steer = steer(workers.port, workers.rtp_port, 1)
    video, audio = tmp_path / "bystander.h264", tmp_path / "bystander.aac"
    bystander = subprocess.Popen(  # a file played on worker 1 all along, kept for comparison
        ["ffmpeg", "-nostdin", "-loglevel", "error", "-rtsp_transport", "tcp", "-i",
         bystander_steer.url("clip.mp4"),
         "-map", "0:v", "-c", "copy", "-f", "h264", "-y", str(video),
         "-map", "0:a", "-c", "copy", "-f", "adts", "-y", str(audio)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    reader_steer = steer(workers.port, workers.rtp_port, 1)
    reader = subprocess.Popen(  # reads the live path on worker 1, relayed from worker 0
        ["ffmpeg", "-nostdin", "-loglevel", "error", "-rtsp_transport", "tcp", "-i", reader_steer.url(path),
         "-c", "copy", "-f", "null", "-"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:

        def playing() -> list[dict]:
            rows = workers.api("sessions")["sessions"]
            if len([s for s in rows if s["path"] == path]) < 2:
                return []
            return [s for s in rows if s["path"] == "clip.mp4" and s["state"] == "playing"]

        (played,) = wait_until(playing, "reading the live path and playing the file")
        assert played["worker"] == 1
        victim = worker_pids(workers)[0]
        os.kill(victim, signal.SIGKILL)
        reader.wait(30)  # the relay's upstream is gone: BYE, and ffmpeg ends
        publisher.process.wait(30)  # its connection died with the worker
        wait_until(lambda: worker_pids(workers)[0] != victim, "worker 0 started again", timeout=120)
        assert re.search(r"worker 0 killed by signal 9; starting it again", workers.log())
        again = Publisher(workers, path, worker=1)  # the path is free for a new publisher anywhere
        again.stop()
        assert bystander.wait(60) == 0  # it played the file to its end
    finally:
        for proc in (publisher.process, reader, bystander):
            if proc.poll() is None:
                proc.kill()
        for steering in (publisher.steering, reader_steer, bystander_steer):
            steering.close()
    log = workers.log()
    ended = log.index(f"session {played['id']} playback ended: end of stream")
    assert log.index("worker 0 killed by signal 9") < ended, "the file was playing when worker 0 died"
    source = workers.media / "clip.mp4"
    assert received_video_nals(video) == source_video_nals(source)
    assert received_audio_frames(audio) == source_audio_frames(source)


def test_workers_stop_when_their_parent_is_killed(tmp_path: Path) -> None:
    """Nothing is left behind when the parent dies without a word (SIGKILL): each worker sees its
    control channel close and stops, releasing the ports."""
    media = tmp_path / "media"
    media.mkdir()
    proc = start_server(media, tmp_path, "--workers", "2", "--no-http")
    try:
        wait_until(lambda: "all 2 workers ready" in proc.log(), "both workers ready", timeout=120)
        pids = worker_pids(proc)
        proc.process.kill()
        proc.process.wait(10)
        wait_until(lambda: not any(_alive(pid) for pid in pids.values()),
                   "workers gone", timeout=30)  # fmt: skip
        assert "the parent process is gone; stopping" in proc.log()
    finally:
        for pid in worker_pids(proc).values():
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)


def _alive(pid: int) -> bool:
    """Running (a zombie waiting for its dead parent's reaper counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
