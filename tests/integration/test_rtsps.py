"""RTSPS (RTSP over TLS) with real clients: ffmpeg/ffprobe, GStreamer, PyAV; the certificate
reloaded without a restart; stalled and garbage handshakes dropped while others play; strict
encryption refusing plain RTSP."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import ssl
import subprocess
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import av
import pytest

from tests.integration.conftest import ServerProcess, free_tcp_port, need, start_server, stop_all
from tests.integration.gst import run_pipeline
from tests.integration.source import ffmpeg_copy as ffmpeg_copy_for
from tests.integration.source import (
    received_audio_frames,
    received_video_nals,
    source_audio_frames,
    source_video_frame_count,
    source_video_nals,
)
from tests.mediagen import make_live_clip
from tests.tlscerts import CertPair, make_pair
from tests.waiting import wait_until

pytestmark = pytest.mark.integration

HANDSHAKE_TIMEOUT = 1.5


@pytest.fixture(scope="module")
def tls_server(
    media_dir: Path, tls_pair: CertPair, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    """A server with RTSPS on; its certificate files are a copy the reload test may replace."""
    folder = tmp_path_factory.mktemp("rtsps")
    cert, key = folder / "server.crt", folder / "server.key"
    shutil.copy(tls_pair.cert, cert)
    shutil.copy(tls_pair.key, key)
    config = folder / "streamd.toml"
    config.write_text(
        f"tls_handshake_timeout = {HANDSHAKE_TIMEOUT}\n"
        f"https_port = {free_tcp_port()}\n"
        '[paths."ten.mp4"]\nencryption = "strict"\n'
    )
    rtsps_port = free_tcp_port()
    proc = start_server(
        media_dir,
        folder,
        "--rtsps-port",
        str(rtsps_port),
        "--tls-cert",
        str(cert),
        "--tls-key",
        str(key),
        "--config",
        str(config),
    )
    proc.rtsps_port = rtsps_port  # type: ignore[attr-defined]
    proc.tls_folder = folder  # type: ignore[attr-defined]
    yield proc
    stop_all(proc)


def rtsps(server: ServerProcess, path: str) -> str:
    return f"rtsps://127.0.0.1:{server.rtsps_port}/{path}"  # type: ignore[attr-defined]


def served_certificate(port: int) -> bytes:
    """The DER certificate a new TLS handshake on ``port`` gets."""
    return ssl.PEM_cert_to_DER_cert(ssl.get_server_certificate(("127.0.0.1", port), timeout=30))


def metric(server: ServerProcess, name: str) -> float:
    with urllib.request.urlopen(server.http("metrics"), timeout=30) as response:
        lines = response.read().decode().splitlines()
    return sum(float(line.split()[-1]) for line in lines if line.startswith(name + " "))


def pem_to_der(path: Path) -> bytes:
    return ssl.PEM_cert_to_DER_cert(path.read_text())


def ffmpeg_copy(url: str, out: Path, *options: str) -> tuple[Path, Path]:
    need("ffmpeg")
    video, audio = out / "v.h264", out / "a.aac"
    ffmpeg_copy_for([*options, "-i", url], video, audio, timeout=120)
    return video, audio


def test_ffmpeg_copy_over_rtsps_is_bit_exact(tls_server: ServerProcess, tmp_path: Path) -> None:
    """ffmpeg 5.1 speaks TLS for rtsps:// and then asks only for TCP interleaved (no
    ``-rtsp_transport`` needed): media travels inside the TLS connection."""
    source = tls_server.media / "bframes.mp4"
    video, audio = ffmpeg_copy(rtsps(tls_server, "bframes.mp4"), tmp_path)
    assert received_video_nals(video) == source_video_nals(source)
    assert received_audio_frames(audio) == source_audio_frames(source)
    assert "over TCP interleaved" in tls_server.log()


def test_gstreamer_rtspsrc_over_rtsps(tls_server: ServerProcess, tmp_path: Path) -> None:
    """GStreamer 1.22 with ``tls-validation-flags=0`` for the self-signed test certificate."""
    need("gst-launch-1.0")
    video = tmp_path / "v.yuv"
    run_pipeline(
        f"rtspsrc location={rtsps(tls_server, 'bframes.mp4')} protocols=tcp tls-validation-flags=0 "
        f"! rtph264depay ! h264parse ! avdec_h264 ! videoconvert ! video/x-raw,format=I420 "
        f"! filesink location={video}"
    )
    frames = source_video_frame_count(tls_server.media / "bframes.mp4")
    assert video.stat().st_size == 320 * 240 * 3 // 2 * frames


def test_pyav_over_rtsps(tls_server: ServerProcess) -> None:
    source = tls_server.media / "bframes.mp4"
    with av.open(rtsps(tls_server, "bframes.mp4"), timeout=30) as container:
        video = sum(1 for _ in container.decode(container.streams.video[0]))
    assert video == source_video_frame_count(source)


def test_strict_path_refuses_plain_rtsp_and_plays_over_rtsps(tls_server: ServerProcess) -> None:
    need("ffprobe")
    plain = subprocess.run(
        ["ffprobe", "-v", "error", "-rtsp_transport", "tcp", tls_server.url("ten.mp4")],
        capture_output=True,
        timeout=60,
    )
    assert plain.returncode != 0
    assert b"403" in plain.stderr
    wait_until(lambda: "encryption required" in tls_server.log(), "the refusal's log line")
    assert metric(tls_server, "streamd_encryption_refusals_total") >= 1
    try:  # the web side in clear too (this server does not redirect HTTP to HTTPS)
        urllib.request.urlopen(tls_server.http("files/ten.mp4"), timeout=30)
        raise AssertionError("/files/ten.mp4 served in clear")
    except urllib.error.HTTPError as error:
        assert error.code == 403
    secure = subprocess.run(
        [
            "ffprobe",
            "-v",
            "error",
            "-show_entries",
            "stream=codec_name",
            "-of",
            "csv=p=0",
            rtsps(tls_server, "ten.mp4"),
        ],
        capture_output=True,
        timeout=60,
        check=True,
    )
    assert sorted(secure.stdout.decode().split()) == ["aac", "h264"]


def test_stalled_and_garbage_handshakes_are_dropped_while_others_play(
    tls_server: ServerProcess, tmp_path: Path
) -> None:
    port = tls_server.rtsps_port  # type: ignore[attr-defined]
    stalled = [socket.create_connection(("127.0.0.1", port), timeout=30) for _ in range(5)]
    garbage = [socket.create_connection(("127.0.0.1", port), timeout=30) for _ in range(5)]
    for sock in garbage:
        sock.sendall(b"OPTIONS * RTSP/1.0\r\nCSeq: 1\r\n\r\n")  # plain RTSP on the TLS port
    half = socket.create_connection(("127.0.0.1", port), timeout=30)
    half.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")  # a ClientHello that stops
    try:
        source = tls_server.media / "bframes.mp4"
        video, _audio = ffmpeg_copy(rtsps(tls_server, "bframes.mp4"), tmp_path)
        assert received_video_nals(video) == source_video_nals(source)
        for sock in [*stalled, *garbage, half]:
            while sock.recv(4096):  # garbage may get a TLS alert first; then every one is closed
                pass
    finally:
        for sock in [*stalled, *garbage, half]:
            sock.close()
    log = tls_server.log()
    assert log.count(f"no TLS handshake in {HANDSHAKE_TIMEOUT:g} s; dropped") >= 6
    assert log.count("TLS handshake failed") >= 5
    assert metric(tls_server, "streamd_tls_handshakes_timed_out_total") >= 6
    assert metric(tls_server, "streamd_tls_handshakes_failed_total") >= 5


def test_certificate_reload_without_restart(tls_server: ServerProcess, tmp_path: Path) -> None:
    """Replacing the files makes new handshakes present the new certificate; no restart."""
    port = tls_server.rtsps_port  # type: ignore[attr-defined]
    folder: Path = tls_server.tls_folder  # type: ignore[attr-defined]
    assert served_certificate(port) == pem_to_der(folder / "server.crt")
    new = make_pair(tmp_path, "streamd renewed")
    os.replace(new.key, folder / "server.key")  # key first: a handshake meanwhile keeps the old pair
    os.replace(new.cert, folder / "server.crt")
    wanted = pem_to_der(folder / "server.crt")
    wait_until(lambda: served_certificate(port) == wanted, "the renewed certificate")
    wait_until(lambda: metric(tls_server, "streamd_tls_certificate_reloads_total") >= 1, "the reload counted")
    need("ffprobe")
    subprocess.run(["ffprobe", "-v", "error", rtsps(tls_server, "bframes.mp4")], check=True, timeout=60)


def published(server: ServerProcess, path: str) -> bool:
    return f"RECORD: {path} is live" in server.log() and f"{path} is offline" not in server.log()


@pytest.fixture(scope="module")
def live_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    need("ffmpeg")
    return make_live_clip(tmp_path_factory.mktemp("rtsps-clip") / "clip.mp4", seconds=6)


@pytest.mark.parametrize("publisher", ["ffmpeg", "gstreamer"])
def test_publishing_over_rtsps_and_reading_it_bit_exact(
    tls_server: ServerProcess, live_clip: Path, tmp_path: Path, publisher: str
) -> None:
    """ANNOUNCE/RECORD over RTSPS (TCP interleaved inside TLS), read back over RTSPS."""
    path = f"live/rtsps-{publisher}"
    if publisher == "ffmpeg":
        command = ["ffmpeg", "-nostdin", "-loglevel", "error", "-re", "-i", str(live_clip)]
        command += ["-c", "copy", "-f", "rtsp", rtsps(tls_server, path)]
    else:
        need("gst-launch-1.0")
        pipeline = (
            f"filesrc location={live_clip} ! qtdemux name=d d.video_0 ! queue ! h264parse "
            f"! rtspclientsink name=s location={rtsps(tls_server, path)} protocols=tcp "
            "tls-validation-flags=0 d.audio_0 ! queue ! aacparse ! s."
        )
        command = ["gst-launch-1.0", "-q", *pipeline.split()]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_until(lambda: published(tls_server, path), f"{path} published over RTSPS")
        video, audio = tmp_path / "v.h264", tmp_path / "a.aac"
        ffmpeg_copy_for(["-i", rtsps(tls_server, path)], video, audio, 2)
    finally:
        process.terminate()
        process.wait(10)
    got = received_video_nals(video)
    source = source_video_nals(live_clip)
    assert len(got) >= 20 and any(source[i : i + len(got)] == got for i in range(len(source)))
    frames = received_audio_frames(audio)
    audio_source = source_audio_frames(live_clip)
    assert len(frames) >= 40
    assert any(audio_source[i : i + len(frames)] == frames for i in range(len(audio_source)))


def test_relay_pulls_an_rtsps_upstream(tls_server: ServerProcess, tmp_path: Path) -> None:
    """A second streamd relays the first one's ``rtsps://`` path with ``upstream_tls_verify =
    false`` for the self-signed certificate, and is refused (certificate not verified) without it.
    (A path with encryption "optional"/"strict" would hand the relay SRTP keys in its SDP, which
    the relay does not read: the SRTP part of issue 15.)"""
    need("ffmpeg")
    source = rtsps(tls_server, "sub%20dir/moov%20end.mp4")
    config = tmp_path / "relay.toml"
    config.write_text(
        f'[paths."relay/tls"]\nsource = "{source}"\nupstream_tls_verify = false\nsource_close_after = 1\n'
        f'[paths."relay/verified"]\nsource = "{source}"\n'
    )
    relay = start_server(tmp_path / "no-media", tmp_path, "--config", str(config), "--no-http")
    try:
        video = tmp_path / "v.h264"
        subprocess.run(
            ["ffmpeg", "-nostdin", "-loglevel", "error", "-rtsp_transport", "tcp",
             "-i", relay.url("relay/tls"), "-t", "2",
             "-map", "0:v", "-c", "copy", "-f", "h264", "-y", str(video)],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip
        got = received_video_nals(video)
        expected = source_video_nals(tls_server.media / "sub dir" / "moov end.mp4")
        assert len(got) >= 10 and any(expected[i : i + len(got)] == got for i in range(len(expected)))
        refused = subprocess.run(
            ["ffprobe", "-v", "error", "-rtsp_transport", "tcp", relay.url("relay/verified")],
            capture_output=True,
            timeout=60,
        )
        assert refused.returncode != 0
        wait_until(lambda: "CERTIFICATE_VERIFY_FAILED" in relay.log(), "the relay's verification failure")
    finally:
        stop_all(relay)


class RecordingProxy:
    """A TCP proxy in front of the server that keeps every byte the server sent (the wire)."""

    def __init__(self, port: int) -> None:
        self.upstream = port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.wire = bytearray()
        self._threads: list[threading.Thread] = []
        self._accepting = threading.Thread(target=self._accept, daemon=True)
        self._accepting.start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", self.upstream))
            for source, sink, record in ((client, server, False), (server, client, True)):
                thread = threading.Thread(target=self._pump, args=(source, sink, record), daemon=True)
                thread.start()
                self._threads.append(thread)

    def _pump(self, source: socket.socket, sink: socket.socket, record: bool) -> None:
        try:
            while data := source.recv(65536):
                if record:
                    self.wire += data
                sink.sendall(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                sink.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self.listener.close()
        for thread in self._threads:
            thread.join(10)


@pytest.mark.parametrize("scheme", ["rtsp", "rtsps"])
def test_no_media_byte_sequence_in_clear_on_the_wire(
    tls_server: ServerProcess, tmp_path: Path, scheme: str
) -> None:
    """What crosses the wire for an RTSPS session holds none of the source's video NAL units
    (each at least 64 bytes) in clear; the same proxy in front of plain RTSP sees them all."""
    port = tls_server.rtsps_port if scheme == "rtsps" else tls_server.port  # type: ignore[attr-defined]
    proxy = RecordingProxy(port)
    try:
        ffmpeg_copy(f"{scheme}://127.0.0.1:{proxy.port}/bframes.mp4", tmp_path, "-rtsp_transport", "tcp")
    finally:
        proxy.close()
    wire = bytes(proxy.wire)
    nals = [n for n in source_video_nals(tls_server.media / "bframes.mp4") if len(n) >= 64]
    # a NAL unit is split over RTP packets (FU-A): look for a 48-byte run from inside each one
    seen = sum(n[16:64] in wire for n in nals)
    if scheme == "rtsps":
        assert seen == 0
        assert b"RTSP/1.0" not in wire and b"a=rtpmap" not in wire  # control in TLS too
    else:
        assert seen == len(nals) > 20
