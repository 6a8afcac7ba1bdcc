"""Every video payload format against real clients over UDP and TCP.

Per codec, a 1 s file is served and received at once by ffmpeg (``-c copy``, compared unit by
unit with the source where Debian's ffmpeg 5.1 can depacketize the format), PyAV (decoded
frames hashed and compared with decoding the file itself) and GStreamer (decoded frame count).
Every clip's clients run at once, eight at a time, to keep the file fast.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import av
import pytest

from media.h264 import split_annexb
from media.h265 import nal_type as h265_nal_type
from media.probe import probe
from media.reader import MediaReader
from tests import mediagen
from tests.integration.codec_matrix import record
from tests.integration.conftest import ARTIFACTS, ServerProcess, need, start_server
from tests.integration.gst import KEEP_ALL, run_pipeline
from tests.shared_files import made_once

pytestmark = pytest.mark.integration

SIZE = (160, 120)
TRANSPORTS = ("udp", "tcp")


@dataclass(frozen=True)
class Case:
    codec: str
    name: str
    encode: tuple[str, ...]
    fps: int = 10
    ffmpeg_format: str | None = None  # raw output format for -c copy; None: ffmpeg 5.1 cannot
    ffmpeg_reason: str = ""
    gst_reason: str = ""  # non-empty: GStreamer 1.22 cannot, and why
    depay: str = ""  # GStreamer's depayloader for it


CASES = [
    Case(
        "hevc",
        "hevc.mp4",
        ("-c:v", "libx265", "-x265-params", "log-level=error:keyint=5:bframes=2"),
        ffmpeg_format="hevc",
        depay="rtph265depay",
    ),
    Case(
        "vp8",
        "vp8.webm",
        ("-c:v", "libvpx", "-b:v", "300k", "-g", "5"),
        ffmpeg_format="ivf",
        depay="rtpvp8depay",
    ),
    Case(
        "vp9",
        "vp9.webm",
        ("-c:v", "libvpx-vp9", "-b:v", "300k", "-g", "5"),
        ffmpeg_reason="n/a: Debian ffmpeg 5.1's VP9 depacketizer hands -c copy nothing it can mux",
        depay="rtpvp9depay",
    ),
    Case(
        "av1",
        "av1.mkv",
        ("-c:v", "libsvtav1", "-preset", "12", "-g", "5"),
        ffmpeg_reason="n/a: Debian ffmpeg 5.1 has no AV1 depacketizer",
        gst_reason="n/a: GStreamer 1.22 has no AV1 depayloader (rtpav1depay is in gst-plugins-rs)",
    ),
    Case(
        "mjpeg",
        "mjpeg.avi",
        ("-c:v", "mjpeg", "-huffman", "default", "-pix_fmt", "yuvj420p"),
        ffmpeg_format="mjpeg",
        depay="rtpjpegdepay",
    ),
    Case(
        "mpeg2video",
        "mpeg2.ts",
        ("-c:v", "mpeg2video", "-g", "5", "-bf", "2"),
        fps=25,
        ffmpeg_format="mpeg2video",
        depay="rtpmpvdepay",
    ),
]


@pytest.fixture(scope="module")
def video_media(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The clips, made once per run: by the parallel pass's check below, for the serial matrix."""
    need("ffmpeg")
    return made_once(tmp_path_factory, "codec-video-clips-1", _make_clips)


def _make_clips(media: Path) -> None:
    encoders = subprocess.run(["ffmpeg", "-hide_banner", "-encoders"], capture_output=True, text=True).stdout
    with ThreadPoolExecutor(3) as pool:
        jobs = [
            pool.submit(mediagen.make_with_ffmpeg, media / case.name, *case.encode, fps=case.fps, size=SIZE)
            for case in CASES
            if f" {case.encode[1]} " in encoders
        ]
    for job in jobs:
        job.result()  # an encoder that failed fails here, not as a missing clip later


def test_every_clip_is_one_second_of_its_codec(video_media: Path) -> None:
    """What the matrix below stands on: each clip holds the codec its row names, one second of it."""
    for case in CASES:
        if (video_media / case.name).exists():
            track = probe(video_media / case.name).tracks[0]
            assert track.codec == case.codec, (case.name, track.codec)
            assert len(decoded_source(video_media / case.name)) == case.fps, case.name


@pytest.fixture(scope="module")
def video_server(video_media: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    proc = start_server(video_media, tmp_path_factory.mktemp("video-server"))
    yield proc
    code = proc.stop()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shutil.copy(proc.log_path, ARTIFACTS / f"video-{proc.log_path.name}")
    assert "Traceback" not in proc.log(), proc.log()
    assert code == 0, proc.log()


def _digest(frame: av.VideoFrame) -> str:
    return hashlib.sha1(frame.to_ndarray(format="yuv420p").tobytes()).hexdigest()


def decoded_source(path: Path) -> list[str]:
    with av.open(str(path)) as container:
        return [_digest(f) for f in container.decode(video=0)]


def source_units(path: Path) -> list[bytes]:
    info = probe(path)
    with MediaReader(path, info, [info.tracks[0].index]) as reader:
        return [au.data for au in iter(reader.read, None)]


def comparable_hevc(nals: list[bytes]) -> list[bytes]:
    return [n for n in nals if h265_nal_type(n) not in (32, 33, 34, 35)]  # VPS/SPS/PPS repeat, AUD dropped


def pyav_client(url: str, transport: str) -> list[str]:
    with av.open(url, options={"rtsp_transport": transport}, timeout=30) as container:
        return [_digest(f) for f in container.decode(video=0)]


def ffmpeg_client(url: str, transport: str, fmt: str, out: Path) -> Path:
    receive = ["ffmpeg", "-nostdin", "-loglevel", "error", "-rtsp_transport", transport, "-i", url]
    subprocess.run(
        [*receive, "-map", "0:v", "-c", "copy", "-f", fmt, "-y", str(out)],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return out


def gstreamer_client(url: str, transport: str, depay: str, out: Path) -> int:
    """Decoded frames, counted from the size of the raw I420 output."""
    pipeline = (
        f"rtspsrc location={url} protocols={transport} ! {depay} ! {KEEP_ALL} ! decodebin ! videoconvert "
        f"! video/x-raw,format=I420 ! filesink location={out}"
    )
    run_pipeline(pipeline)
    return out.stat().st_size // (SIZE[0] * SIZE[1] * 3 // 2)


def check_ffmpeg_copy(case: Case, source: Path, received: Path) -> None:
    """The units ffmpeg wrote are the source's: NAL units, frames or pictures, byte for byte."""
    if case.codec == "hevc":
        sent = comparable_hevc([n for unit in source_units(source) for n in split_annexb(unit)])
        assert comparable_hevc(split_annexb(received.read_bytes())) == sent
    elif case.codec == "vp8":
        with av.open(str(received)) as container:
            frames = [bytes(p) for p in container.demux(video=0) if p.size]
        assert frames == source_units(source)
    elif case.codec == "mpeg2video":
        assert received.read_bytes() == b"".join(source_units(source))
    else:  # mjpeg: ffmpeg writes its own JPEG headers around our scan data; pixels must match
        assert decoded_source(received) == decoded_source(source)


CLIENTS = ("pyav", "ffmpeg", "gstreamer")


def _expected_outcome(case: Case, client: str) -> str | None:
    """What the matrix records when ``client`` receives ``case`` right; None if it cannot."""
    if client == "ffmpeg":
        return ("decoded" if case.codec == "mjpeg" else "bit-exact") if case.ffmpeg_format else None
    if client == "gstreamer":
        return "decoded" if not case.gst_reason and shutil.which("gst-launch-1.0") else None
    return "decoded"


def receive(video_server: ServerProcess, case: Case, client: str, transport: str, out: Path) -> None:
    """``client`` plays ``case`` over ``transport``; AssertionError unless every frame came right."""
    source = video_server.media / case.name
    url = video_server.url(case.name)
    if client == "pyav":
        assert pyav_client(url, transport) == decoded_source(source), (
            f"pyav/{transport}: decoded frames differ"
        )
    elif client == "ffmpeg":
        assert case.ffmpeg_format is not None
        received = ffmpeg_client(url, transport, case.ffmpeg_format, out / f"ffmpeg.{case.ffmpeg_format}")
        check_ffmpeg_copy(case, source, received)  # MJPEG by pixels (ffmpeg rebuilds the headers)
    else:
        frames = gstreamer_client(url, transport, case.depay, out / "gst.yuv")
        assert frames == case.fps, f"gstreamer/{transport}: {frames} frames decoded of {case.fps}"


@pytest.fixture(scope="module")
def received(
    video_server: ServerProcess, tmp_path_factory: pytest.TempPathFactory
) -> dict[tuple[str, str, str], str | None]:
    """Every client over both transports for every clip, all clips at once: None when right, else
    why not. Each run mostly waits for its 1 s clip to play in real time, so eight run at once
    (one codec at a time, three at once, took 13 s); a UDP run that fails is run once more, since
    a datagram lost on a loaded machine is not a format bug (loss has its own tests)."""
    jobs = [
        (case, client, transport)
        for case in CASES
        if (video_server.media / case.name).exists()
        for client in CLIENTS
        if _expected_outcome(case, client) is not None
        for transport in TRANSPORTS
    ]

    def attempt(case: Case, client: str, transport: str) -> str | None:
        out = tmp_path_factory.mktemp(f"{case.codec}-{client}-{transport}")
        try:
            receive(video_server, case, client, transport, out)
        except (AssertionError, OSError, subprocess.SubprocessError, av.FFmpegError) as exc:
            return f"{type(exc).__name__}: {exc}"
        return None

    def run(job: tuple[Case, str, str]) -> str | None:
        failure = attempt(*job)
        if failure is not None and job[2] == "udp":
            failure = attempt(*job)
        return failure

    with ThreadPoolExecutor(max_workers=8) as pool:
        failures = list(pool.map(run, jobs))
    return {
        (case.codec, client, transport): f
        for (case, client, transport), f in zip(jobs, failures, strict=True)
    }


# serial: it runs many clients at once over UDP itself, and parallel load would make it a test of
# the machine (a datagram lost), not of the formats
@pytest.mark.serial
@pytest.mark.parametrize("case", CASES, ids=[c.codec for c in CASES])
def test_clients_receive_every_frame(
    video_media: Path, received: dict[tuple[str, str, str], str | None], case: Case
) -> None:
    if not (video_media / case.name).exists():
        pytest.skip(f"ffmpeg cannot encode {case.codec} here")
    for transport in TRANSPORTS:
        for client in CLIENTS:
            outcome = _expected_outcome(case, client)
            if outcome is None:
                reason = case.ffmpeg_reason if client == "ffmpeg" else case.gst_reason
                if reason:
                    record(case.codec, client, transport, reason)
                continue
            failure = received[case.codec, client, transport]
            assert failure is None, f"{case.codec} {client}/{transport}: {failure}"
            record(case.codec, client, transport, outcome)
