"""GStreamer's rtspsrc and PyAV decode what the server sends, over UDP and TCP."""

from __future__ import annotations

from pathlib import Path

import av
import pytest

from tests.integration.codec_matrix import record
from tests.integration.conftest import BFRAMES_SECONDS, ServerProcess, need
from tests.integration.gst import KEEP_ALL, run_pipeline
from tests.integration.source import source_audio_frames, source_video_frame_count

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_gstreamer_rtspsrc_decodes_every_frame(server: ServerProcess, tmp_path: Path, transport: str) -> None:
    need("gst-launch-1.0")
    video, audio = tmp_path / "v.yuv", tmp_path / "a.raw"
    pipeline = (
        f"rtspsrc location={server.url('bframes.mp4')} protocols={transport} name=src "
        f"src. ! rtph264depay ! {KEEP_ALL} ! h264parse ! avdec_h264 ! videoconvert ! video/x-raw,format=I420 "
        f"! filesink location={video} "
        f"src. ! rtpmp4gdepay ! {KEEP_ALL} ! decodebin ! audioconvert ! audio/x-raw,format=S16LE,channels=2 "
        f"! filesink location={audio}"
    )
    run_pipeline(pipeline)
    frame_size = 320 * 240 * 3 // 2
    assert video.stat().st_size == frame_size * source_video_frame_count(server.media / "bframes.mp4")
    # 4 s of 48 kHz stereo S16; the decoder trims the priming samples
    assert abs(audio.stat().st_size / 4 / 48000 - BFRAMES_SECONDS) < 0.1
    record("h264", "gstreamer", transport, "decoded")
    record("aac", "gstreamer", transport, "decoded")


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_pyav_decodes_every_frame(server: ServerProcess, transport: str) -> None:
    source = server.media / "bframes.mp4"
    with av.open(server.url("bframes.mp4"), options={"rtsp_transport": transport}, timeout=30) as container:
        video = audio = 0
        for frame in container.decode(*container.streams):
            if isinstance(frame, av.VideoFrame):
                video += 1
                assert (frame.width, frame.height) == (320, 240)
            else:
                audio += 1
    assert video == source_video_frame_count(source)
    assert audio == len(source_audio_frames(source))  # every AAC frame, priming included
    record("h264", "pyav", transport, "decoded")
    record("aac", "pyav", transport, "decoded")


def test_pyav_plays_the_test_stream(server: ServerProcess) -> None:
    with av.open(server.url("test"), options={"rtsp_transport": "tcp"}, timeout=30) as container:
        stream = container.streams.video[0]
        frames = 0
        for _frame in container.decode(stream):
            frames += 1
            if frames == 30:
                break
    assert frames == 30
    assert (stream.codec_context.width, stream.codec_context.height) == (640, 360)
