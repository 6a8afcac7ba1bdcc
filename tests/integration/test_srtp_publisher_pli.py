"""Keyframe requests reach a GStreamer publisher that publishes SRTP (issue 16, point 3).

rtspclientsink (``profiles=savp``, over RTSPS and UDP) encrypts with a key it sends in its
SETUP's ``KeyMgmt``, and decrypts the server's RTCP with ``srtpdec``, which looks a key up by
the RTCP sender's SSRC among the keys it read from ``KeyMgmt`` headers in the ANNOUNCE reply
(GStreamer 1.22 reads them there, one per stream in order, as gst-rtsp-server sends them). The
publisher here has one keyframe in 10,000 frames (400 s): a reader joining mid-GOP starts only
when the keyframe gate's PLI, sent as SRTCP under the key we gave, reaches it.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import ServerProcess, free_tcp_port, need, start_server, stop_all
from tests.integration.gst import live_publisher
from tests.integration.test_pli_relay import _keyframes_around_pli as keyframes_around_pli
from tests.integration.test_pli_relay import _read_frames
from tests.tlscerts import CertPair

pytestmark = pytest.mark.integration

READ_TIMEOUT = 20  # seconds: far below the publisher's 400 s GOP, far above a PLI's round trip


@pytest.fixture(scope="module")
def server(
    media_dir: Path, tls_pair: CertPair, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    folder = tmp_path_factory.mktemp("srtp-pli")
    config = folder / "streamd.toml"
    config.write_text('encryption = "optional"\n')
    rtsps_port = free_tcp_port()
    proc = start_server(
        media_dir, folder, "--rtsps-port", str(rtsps_port),
        "--tls-cert", str(tls_pair.cert), "--tls-key", str(tls_pair.key), "--config", str(config),
    )  # fmt: skip
    proc.rtsps_port = rtsps_port  # type: ignore[attr-defined]
    yield proc
    stop_all(proc)


def rtsps(server: ServerProcess, path: str) -> str:
    return f"rtsps://127.0.0.1:{server.rtsps_port}/{path}"  # type: ignore[attr-defined]


def srtp_publisher(
    server: ServerProcess, path: str, audio_first: bool = False
) -> contextlib.AbstractContextManager[None]:
    """rtspclientsink publishing ``path`` as SRTP over UDP, a keyframe only at the start or when
    asked (its RTP session turns a PLI it can decrypt into a force-key-unit event). With
    ``audio_first``, an Opus stream is its first and the video its second: the video's key is the
    ANNOUNCE reply's second ``KeyMgmt``."""
    need("gst-launch-1.0")
    video = (
        "videotestsrc is-live=true ! video/x-raw,width=160,height=120,framerate=25/1 ! "
        "openh264enc gop-size=10000 ! h264parse config-interval=-1"
    )
    sink = "rtspclientsink name=s protocols=udp profiles=savp tls-validation-flags=0 "
    sink += f"location={rtsps(server, path)}"
    if audio_first:
        pipeline = f"{sink} {video} ! s.sink_0 audiotestsrc is-live=true ! opusenc ! s.sink_1"
    else:
        pipeline = f"{video} ! {sink}"
    return live_publisher(pipeline, lambda: f"{path} is live" in server.log())


def test_readers_joining_mid_gop_of_an_srtp_publisher_start_at_once(server: ServerProcess) -> None:
    """Three ffmpeg readers, one after the other, each joining the 400 s GOP of an SRTP
    publisher (Opus, then H.264), each starting within seconds: the gate's request reached the
    publisher as SRTCP under the key it read for its second stream."""
    need("ffmpeg")
    path = "live/srtp-pli"
    with srtp_publisher(server, path, audio_first=True):
        for _ in range(3):
            _read_frames(server.url(path), timeout=READ_TIMEOUT)
    setups = re.findall(rf"{path}: session \S+ SETUP record \S+ \((\w+)\) over UDP \S+ SRTP", server.log())
    assert setups == ["opus", "h264"]


def test_a_whep_viewer_joining_mid_gop_and_its_pli_get_keyframes(server: ServerProcess) -> None:
    """An aiortc WHEP viewer of the SRTP publisher's path: the keyframe its wait at the gate asked
    for, then another for the PLI it sends itself (each within 20 s, against a 400 s GOP)."""
    path = "live/srtp-whep"
    with srtp_publisher(server, path):
        before, after = keyframes_around_pli(server, path)
    assert before >= 1 and after > before
