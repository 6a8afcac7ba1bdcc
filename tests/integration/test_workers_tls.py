"""``streamd serve --workers 2`` with TLS: connections that must be served by the other worker are
forwarded (their decrypted bytes, through the worker that terminated TLS), not handed over as
sockets (issue 18), and the forwarded client is authorized as itself, over TLS.

Connections reach the worker the test chose through :mod:`tests.integration.workers_tls_pin`.
"""

from __future__ import annotations

import base64
import re
import signal
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest

from streamd.auth.secrets import make_secret
from tests.integration.conftest import ServerProcess, free_tcp_port, need, start_server, stop_all
from tests.integration.gst import run_pipeline
from tests.integration.source import (
    ffmpeg_copy,
    received_audio_frames,
    received_video_nals,
    source_audio_frames,
    source_video_frame_count,
    source_video_nals,
)
from tests.integration.workers_pin import Steering, exchange, pinned
from tests.integration.workers_tls_pin import connect_from, source_port_for, tls_on
from tests.mediagen import make_h264_aac_mp4
from tests.tlscerts import CertPair
from tests.waiting import wait_until

pytestmark = pytest.mark.integration

PRIVATE = "private/door.mp4"  # the viewer's only, and strict: never served without TLS
VIEWER = "Basic " + base64.b64encode(b"viewer:v pw").decode()


@pytest.fixture(scope="module")
def server(tls_pair: CertPair, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    need("ffmpeg")
    media = tmp_path_factory.mktemp("workers-tls-media")
    make_h264_aac_mp4(media / "bframes.mp4", seconds=2, bframes=True)
    make_h264_aac_mp4(media / "long.mp4", seconds=30, bframes=False, size=(160, 120))
    (media / "private").mkdir()
    make_h264_aac_mp4(media / PRIVATE, seconds=2, bframes=False, size=(160, 120))
    folder = tmp_path_factory.mktemp("workers-tls")
    config = folder / "streamd.toml"
    config.write_text(
        'auth_methods = ["digest", "basic"]\nlogin_free_failures = 1000\n'
        '[[users]]\nname = "any"\n'
        'permissions = [{ action = "read", path = "bframes.mp4" }, { action = "read", path = "long.mp4" }]\n'
        f'[[users]]\nname = "viewer"\npassword = "{make_secret("viewer", "v pw", "streamd")}"\n'
        'permissions = [{ action = "read", path = "*" }]\n'
        f'[paths."{PRIVATE}"]\nencryption = "strict"\n'
    )
    rtsps_port = free_tcp_port()
    proc = start_server(
        media, folder, "--workers", "2", "--rtsps-port", str(rtsps_port),
        "--tls-cert", str(tls_pair.cert), "--tls-key", str(tls_pair.key), "--config", str(config),
    )  # fmt: skip
    proc.rtsps_port = rtsps_port  # type: ignore[attr-defined]
    wait_until(lambda: "all 2 workers ready" in proc.log(), "both workers ready", timeout=120)
    yield proc
    stop_all(proc)


def on(server: ServerProcess, worker: int) -> ssl.SSLSocket:
    """A TLS connection to the RTSPS port that reached ``worker``."""
    return tls_on(server.rtsps_port, server.rtp_port, worker)  # type: ignore[attr-defined]


def url(server: ServerProcess, path: str) -> str:
    return f"rtsps://127.0.0.1:{server.rtsps_port}/{path}"  # type: ignore[attr-defined]


def setup(sock: socket.socket, target: str, headers: str = "") -> str:
    """DESCRIBE and SETUP of the first track (UDP, SRTP since the SDP had keys): the session id."""
    status, _, _ = exchange(sock, f"DESCRIBE {target} RTSP/1.0\nCSeq: 1\n{headers}")
    assert status == 200, status
    status, answer, _ = exchange(
        sock,
        f"SETUP {target}/trackID=0 RTSP/1.0\nCSeq: 2\n{headers}Transport: RTP/AVP;unicast;client_port=9-10\n",
    )
    assert status == 200, (status, answer)
    return answer["session"].split(";")[0]


def test_ffmpeg_tunnel_over_tls_with_get_and_post_on_different_workers(
    server: ServerProcess, tmp_path: Path
) -> None:
    """ffmpeg 5.1 ``-rtsp_transport https`` opens the GET first, then the POST: the GET reaches
    worker 0 and the POST worker 1, which forwards the POST's decrypted bytes to worker 0."""
    port = server.rtsps_port  # type: ignore[attr-defined]
    sources = [source_port_for(port, server.rtp_port, 0), source_port_for(port, server.rtp_port, 1)]
    with Steering([connect_from(port, source) for source in sources]) as steering:  # TLS end to end: ffmpeg's
        video, audio = tmp_path / "v.h264", tmp_path / "a.aac"
        options = ["-rtsp_transport", "https", "-i", f"rtsp://127.0.0.1:{steering.port}/bframes.mp4"]
        ffmpeg_copy(options, video, audio, timeout=60)
    source = server.media / "bframes.mp4"
    assert received_video_nals(video) == source_video_nals(source)
    assert received_audio_frames(audio) == source_audio_frames(source)
    log = server.log()
    assert re.search(r"\[worker 1\] tunnel \S+: its GET is on worker 0; forwarding the POST to it", log), log
    ended = r"\[worker 1\] client \S+ \(tunnel \S+ to worker 0\): forwarding ended"
    wait_until(lambda: re.search(ended, server.log()), "the forwarding logged as ended")


def test_gstreamer_rtspsh_tunnel_with_get_and_post_on_different_workers(
    server: ServerProcess, tmp_path: Path
) -> None:
    """GStreamer 1.22's ``rtspsh://``: its GET reaches worker 1 and its POST worker 0 (the other
    way round from ffmpeg's case); every frame is decoded."""
    need("gst-launch-1.0")
    port = server.rtsps_port  # type: ignore[attr-defined]
    sources = [source_port_for(port, server.rtp_port, 1), source_port_for(port, server.rtp_port, 0)]
    video = tmp_path / "v.yuv"
    with Steering([connect_from(port, source) for source in sources]) as steering:
        run_pipeline(
            f"rtspsrc location=rtspsh://127.0.0.1:{steering.port}/bframes.mp4 tls-validation-flags=0 "
            "! rtph264depay ! h264parse ! avdec_h264 ! videoconvert ! video/x-raw,format=I420 "
            f"! filesink location={video}"
        )
    assert video.stat().st_size == 320 * 240 * 3 // 2 * source_video_frame_count(server.media / "bframes.mp4")
    assert re.search(
        r"\[worker 0\] tunnel \S+: its GET is on worker 1; forwarding the POST to it", server.log()
    )


def test_rtsps_session_continued_from_a_connection_on_the_other_worker(server: ServerProcess) -> None:
    target = url(server, "bframes.mp4")
    with on(server, 0) as first:
        session = setup(first, target)
    with on(server, 1) as second:  # the client comes back on a new connection: worker 1 terminates it
        assert exchange(second, f"PLAY {target} RTSP/1.0\nCSeq: 3\nSession: {session}\n")[0] == 200
        assert exchange(second, f"PAUSE {target} RTSP/1.0\nCSeq: 4\nSession: {session}\n")[0] == 200
        assert exchange(second, f"GET_PARAMETER {target} RTSP/1.0\nCSeq: 5\nSession: {session}\n")[0] == 200
        assert exchange(second, f"TEARDOWN {target} RTSP/1.0\nCSeq: 6\nSession: {session}\n")[0] == 200
    assert re.search(rf"\[worker 1\] client \S+: session {session} is on worker 0: forwarding", server.log())
    with on(server, 1) as third:  # a session nobody has any more is still 454
        assert exchange(third, f"PLAY {target} RTSP/1.0\nCSeq: 1\nSession: {session}\n")[0] == 454


def test_a_forwarded_client_is_authorized_as_itself_over_tls(server: ServerProcess) -> None:
    """Forwarded connections arrive on a worker's private socket, but not as a trusted sibling:
    without credentials they get 401 like a direct one, with them the strict path is served,
    since the client came over TLS; over plain RTSP (handed over as a socket) it is refused."""
    target = url(server, PRIVATE)
    login = f"Authorization: {VIEWER}\n"
    with on(server, 0) as owner:
        assert exchange(owner, f"DESCRIBE {target} RTSP/1.0\nCSeq: 1\n")[0] == 401  # direct: 401
        session = setup(owner, target, login)
        assert exchange(owner, f"GET_PARAMETER {target} RTSP/1.0\nCSeq: 3\nSession: {session}\n")[0] == 401
    with on(server, 1) as forwarded:  # the same request through the pipe: 401 too
        status, headers, _ = exchange(
            forwarded, f"GET_PARAMETER {target} RTSP/1.0\nCSeq: 3\nSession: {session}\n"
        )
        assert status == 401 and "www-authenticate" in headers
        seen_as = rf"\[worker 0\] client 127\.0\.0\.1:{forwarded.getsockname()[1]}: GET_PARAMETER \S+ -> 401"
        assert re.search(seen_as, server.log())  # the owner answered, to the client's own address
        for cseq, method in enumerate(("PLAY", "GET_PARAMETER", "TEARDOWN"), 4):
            request = f"{method} {target} RTSP/1.0\nCSeq: {cseq}\nSession: {session}\n{login}"
            assert exchange(forwarded, request)[0] == 200, method  # strict: it came over TLS
    assert re.search(rf"\[worker 1\] client \S+: session {session} is on worker 0: forwarding", server.log())
    with on(server, 0) as owner:
        session = setup(owner, target, login)
    with pinned(server.port, server.rtp_port, 1) as plain:  # clear RTSP: the socket is handed over
        status = exchange(
            plain, f"PLAY {server.url(PRIVATE)} RTSP/1.0\nCSeq: 9\nSession: {session}\n{login}"
        )[0]
        assert status == 403


def rtcp_packet_types(stream: bytes) -> list[int]:
    """The RTCP packet types in the interleaved frames of ``stream``: an RTSP response, then frames."""
    head, _, rest = stream.partition(b"\r\n\r\n")
    assert head.startswith(b"RTSP/1.0 200"), head[:80]
    types, i = [], 0
    while i + 4 <= len(rest):
        assert rest[i] == 0x24, f"not an interleaved frame at {i}"
        channel, size = rest[i + 1], int.from_bytes(rest[i + 2 : i + 4], "big")
        payload, i = rest[i + 4 : i + 4 + size], i + 4 + size
        j = 0
        while channel % 2 and j + 4 <= len(payload):  # RTCP channels: a compound packet
            types.append(payload[j + 1])
            j += 4 * (int.from_bytes(payload[j + 2 : j + 4], "big") + 1)
    return types


def test_sigterm_a_forwarded_client_gets_its_bye_before_the_workers_stop(server: ServerProcess) -> None:
    """Last in the module: it stops the server. Worker 0 ends the session (RTCP BYE) while worker 1,
    which terminated the client's TLS, waits for the pipe to end before it exits."""
    target = url(server, "long.mp4")
    with on(server, 0) as first:
        session = setup(first, target)
        with on(server, 1) as second:
            assert (
                exchange(second, f"GET_PARAMETER {target} RTSP/1.0\nCSeq: 3\nSession: {session}\n")[0] == 200
            )
            status, _, _ = exchange(second, f"DESCRIBE {target} RTSP/1.0\nCSeq: 4\n")
            assert status == 200
            tcp = "Transport: RTP/AVP/TCP;unicast;interleaved=0-1\n"
            status, headers, _ = exchange(second, f"SETUP {target}/trackID=0 RTSP/1.0\nCSeq: 5\n{tcp}")
            assert status == 200
            playing = headers["session"].split(";")[0]
            second.sendall(f"PLAY {target} RTSP/1.0\r\nCSeq: 6\r\nSession: {playing}\r\n\r\n".encode())
            stream = second.recv(65536)  # the response, and the first packets: it plays
            server.process.send_signal(signal.SIGTERM)
            while chunk := second.recv(65536):  # to the end: the owner closes after BYE
                stream += chunk
    assert server.stop() == 0
    assert 203 in rtcp_packet_types(stream)  # BYE
    assert re.search(
        rf"\[worker 0\] client 127\.0\.0\.1:\d+ long\.mp4: session {playing} ended", server.log()
    )
