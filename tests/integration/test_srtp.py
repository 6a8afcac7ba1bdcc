"""SRTP/SRTCP with real clients over RTSPS (issue 15): GStreamer rtspsrc with MIKEY over UDP,
ffmpeg with SDES, GStreamer rtspclientsink publishing SRTP, what travels on the wire, and bad input.

What each client can do, from their sources and checked here: GStreamer 1.22 reads the SDP's
``a=key-mgmt:mikey`` when the m-line says RTP/SAVP, SETUPs RTP/SAVP with its own key in
``KeyMgmt``, over UDP or TCP. ffmpeg 5.1 reads ``a=crypto`` whatever the m-line says, asks
RTP/AVP, and over ``rtsps://`` forces TCP interleaved (``rtsp.c`` sets the lower-transport mask),
so its SRTP travels inside TLS; it sends its receiver reports unprotected.
"""

from __future__ import annotations

import base64
import os
import re
import socket
import ssl
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from streamd.rtsp.headers import parse_transport
from streamd.srtp.context import Protector, Unprotector
from streamd.srtp.mikey import CryptoSession, build_mikey, format_key_mgmt, parse_mikey_base64
from streamd.srtp.sdes import parse_crypto
from streamd.srtp.suites import MasterKey
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
from tests.mediagen import make_live_clip
from tests.tlscerts import CertPair
from tests.waiting import wait_until

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def srtp_server(
    media_dir: Path, tls_pair: CertPair, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    folder = tmp_path_factory.mktemp("srtp")
    config = folder / "streamd.toml"
    rtsps_port = free_tcp_port()
    relay = f'source = "rtsps://127.0.0.1:{rtsps_port}/bframes.mp4"\nupstream_tls_verify = false\n'
    config.write_text(
        'encryption = "optional"\n[paths."ten.mp4"]\nencryption = "strict"\n'
        f'[paths."relay/udp"]\n{relay}source_transport = "udp"\nencryption = "no"\n'
        f'[paths."relay/tcp"]\n{relay}source_transport = "tcp"\nencryption = "no"\n'
    )
    proc = start_server(
        media_dir,
        folder,
        "--rtsps-port",
        str(rtsps_port),
        "--tls-cert",
        str(tls_pair.cert),
        "--tls-key",
        str(tls_pair.key),
        "--config",
        str(config),
    )
    proc.rtsps_port = rtsps_port  # type: ignore[attr-defined]
    yield proc
    stop_all(proc)


def rtsps(server: ServerProcess, path: str) -> str:
    return f"rtsps://127.0.0.1:{server.rtsps_port}/{path}"  # type: ignore[attr-defined]


def metric(server: ServerProcess, name: str) -> float:
    import urllib.request

    with urllib.request.urlopen(server.http("metrics"), timeout=30) as response:
        text = response.read().decode()
    match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
    return float(match.group(1)) if match else 0.0


# --- what is on the wire -----------------------------------------------------------------------------


class Capture:
    """UDP datagrams leaving ``server``'s RTP port (each worker's, with --workers) on loopback,
    seen with an AF_PACKET socket (needs root)."""

    def __init__(self, server: ServerProcess) -> None:
        workers = int(os.environ.get("STREAMD_TEST_WORKERS") or 1)  # worker k sends from rtp_port + 2 k
        self.ports = {server.rtp_port + 2 * k for k in range(workers)}
        self.datagrams: list[bytes] = []
        self._sock = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.ntohs(0x0800))
        self._sock.bind(("lo", 0))
        self._sock.settimeout(0.2)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                packet = self._sock.recv(70000)
            except TimeoutError:
                continue
            ihl = (packet[0] & 0x0F) * 4
            if packet[9] != 17 or len(packet) < ihl + 8:
                continue
            if int.from_bytes(packet[ihl : ihl + 2], "big") in self.ports:
                self.datagrams.append(packet[ihl + 8 :])

    def close(self) -> list[bytes]:
        self._stop.set()
        self._thread.join(5)
        self._sock.close()
        return self.datagrams


def can_capture() -> bool:
    try:
        socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM).close()
    except (PermissionError, OSError, AttributeError):
        return False
    return True


def source_windows(source: Path) -> list[bytes]:
    """32-byte pieces of every video NAL unit of the source (slice data, as RTP carries it)."""
    return [nal[8:40] for nal in source_video_nals(source) if len(nal) >= 48]


def in_clear(datagrams: list[bytes], windows: list[bytes]) -> int:
    return sum(1 for window in windows if any(window in d for d in datagrams))


def gst_play_udp(url: str, video: Path) -> None:
    run_pipeline(
        f"rtspsrc location={url} protocols=udp tls-validation-flags=0 "
        f"! rtph264depay ! h264parse ! avdec_h264 ! videoconvert ! video/x-raw,format=I420 "
        f"! filesink location={video}"
    )


def test_gstreamer_mikey_srtp_over_udp_nothing_in_clear_on_the_wire(
    srtp_server: ServerProcess, tmp_path: Path
) -> None:
    """rtspsrc over RTSPS: MIKEY keys both ways, every frame decoded, and a capture of what left
    the server's RTP port holds no piece of the source; the same capture of plain RTP does."""
    need("gst-launch-1.0")
    if not can_capture():
        pytest.skip("AF_PACKET capture needs root")
    source = srtp_server.media / "bframes.mp4"
    frames = source_video_frame_count(source)
    windows = source_windows(source)
    assert len(windows) >= 10
    capture = Capture(srtp_server)
    try:
        gst_play_udp(rtsps(srtp_server, "bframes.mp4"), tmp_path / "v.yuv")
    finally:
        secret = capture.close()
    assert (tmp_path / "v.yuv").stat().st_size == 320 * 240 * 3 // 2 * frames
    assert len(secret) >= frames and in_clear(secret, windows) == 0
    assert "over UDP" in srtp_server.log() and "SRTP AES_CM_128_HMAC_SHA1_80" in srtp_server.log()
    # the check has teeth: plain RTP (rtsp://, no keys) shows the source on the wire
    capture = Capture(srtp_server)
    try:
        gst_play_udp(srtp_server.url("bframes.mp4"), tmp_path / "plain.yuv")
    finally:
        plain = capture.close()
    assert in_clear(plain, windows) >= len(windows) // 2


def test_ffmpeg_sdes_srtp_inside_rtsps_is_bit_exact(srtp_server: ServerProcess, tmp_path: Path) -> None:
    """ffmpeg reads ``a=crypto`` and decrypts what arrives (interleaved: rtsps:// is TCP-only in
    ffmpeg 5.1), even with ``-rtsp_transport udp`` asked for."""
    need("ffmpeg")
    source = srtp_server.media / "bframes.mp4"
    video, audio = tmp_path / "v.h264", tmp_path / "a.aac"
    before = srtp_server.log().count("SRTP AES_CM_128_HMAC_SHA1_80")
    ffmpeg_copy(["-rtsp_transport", "udp", "-i", rtsps(srtp_server, "bframes.mp4")], video, audio, 60)
    assert received_video_nals(video) == source_video_nals(source)
    assert received_audio_frames(audio) == source_audio_frames(source)
    setups = srtp_server.log().split("\n")
    new = [line for line in setups if "TCP interleaved" in line and "SRTP AES_CM_128_HMAC_SHA1_80" in line]
    assert len(new) >= 2 and srtp_server.log().count("SRTP AES_CM_128_HMAC_SHA1_80") >= before + 2


def test_gstreamer_publishes_srtp_and_ffmpeg_reads_it_back_bit_exact(
    srtp_server: ServerProcess, tmp_path: Path
) -> None:
    """rtspclientsink ``profiles=savp`` over RTSPS and UDP: its key in ``KeyMgmt``, its SRTP
    decrypted before the live path sees it."""
    need("gst-launch-1.0")
    clip = make_live_clip(tmp_path / "clip.mp4", seconds=6)
    path = "live/srtp-gst"
    pipeline = (
        f"filesrc location={clip} ! qtdemux name=d d.video_0 ! queue ! h264parse "
        f"! rtspclientsink name=s location={rtsps(srtp_server, path)} protocols=udp profiles=savp "
        "tls-validation-flags=0 d.audio_0 ! queue ! aacparse ! s."
    )
    process = subprocess.Popen(["gst-launch-1.0", "-q", *pipeline.split()], stderr=subprocess.PIPE)
    try:
        wait_until(lambda: f"RECORD: {path} is live" in srtp_server.log(), f"{path} published")
        video, audio = tmp_path / "v.h264", tmp_path / "a.aac"
        ffmpeg_copy(["-i", rtsps(srtp_server, path)], video, audio, 2)
    finally:
        process.terminate()
        process.wait(10)
    log = srtp_server.log()
    assert re.search(rf"{path}: session \S+ SETUP record \S+ \(h264\) over UDP \S+ SRTP", log), log[-2000:]
    got, source = received_video_nals(video), source_video_nals(clip)
    assert len(got) >= 20 and any(source[i : i + len(got)] == got for i in range(len(source)))
    frames, audio_source = received_audio_frames(audio), source_audio_frames(clip)
    assert len(frames) >= 40 and any(
        audio_source[i : i + len(frames)] == frames for i in range(len(audio_source))
    )


# --- bad input, with our own RTSP client and UDP sockets ---------------------------------------------


class RawClient:
    """Just enough RTSP over a (TLS) socket to send what real clients would not."""

    def __init__(self, port: int, tls: bool) -> None:
        sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        if tls:
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            sock = context.wrap_socket(sock)
        self.sock, self.buffer, self.cseq = sock, b"", 0

    def request(
        self, method: str, url: str, headers: dict[str, str] | None = None
    ) -> tuple[int, dict, bytes]:
        self.cseq += 1
        lines = [f"{method} {url} RTSP/1.0", f"CSeq: {self.cseq}"]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        while b"\r\n\r\n" not in self.buffer:
            self.buffer += self.sock.recv(65536)
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        status_line, *header_lines = head.decode().split("\r\n")
        reply = {k.lower(): v.strip() for k, v in (line.split(":", 1) for line in header_lines)}
        length = int(reply.get("content-length", 0))
        while len(self.buffer) < length:
            self.buffer += self.sock.recv(65536)
        body, self.buffer = self.buffer[:length], self.buffer[length:]
        return int(status_line.split()[1]), reply, body

    def close(self) -> None:
        self.sock.close()


def udp_pair() -> tuple[socket.socket, socket.socket]:
    for _ in range(50):
        rtp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        rtp.bind(("127.0.0.1", 0))
        port = rtp.getsockname()[1]
        if port % 2 == 0:
            rtcp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                rtcp.bind(("127.0.0.1", port + 1))
            except OSError:
                rtp.close()
                continue
            return rtp, rtcp
        rtp.close()
    raise RuntimeError("no even/odd UDP port pair")


def test_refused_and_dropped_while_the_session_carries_on(srtp_server: ServerProcess) -> None:
    url = rtsps(srtp_server, "ten.mp4")
    plain = RawClient(srtp_server.port, tls=False)
    status, _, _ = plain.request("SETUP", srtp_server.url("bframes.mp4") + "/trackID=0",
                                 {"Transport": "RTP/SAVP;unicast;client_port=5000-5001"})  # fmt: skip
    assert (
        status == 461 and "RTP/SAVP needs RTSPS: SRTP keys never travel over plain RTSP" in srtp_server.log()
    )
    plain.close()
    client = RawClient(srtp_server.rtsps_port, tls=True)  # type: ignore[attr-defined]
    rtp, rtcp = udp_pair()
    try:
        ports = f"client_port={rtp.getsockname()[1]}-{rtcp.getsockname()[1]}"
        status, _, _ = client.request("SETUP", url + "/trackID=0", {"Transport": f"RTP/AVP;unicast;{ports}"})
        assert status == 461, "strict path: plain RTP over UDP refused"
        bad = {"Transport": f"RTP/SAVP;unicast;{ports}", "KeyMgmt": 'prot=mikey;data="AQAF"'}
        assert client.request("SETUP", url + "/trackID=0", bad)[0] == 466
        status, _, body = client.request("DESCRIBE", url)
        assert status == 200
        sdp_key = parse_crypto(re.search(rb"a=crypto:(.*)\r\n", body).group(1).decode()).key
        mikey = re.search(rb"a=key-mgmt:mikey (\S+)", body).group(1).decode()
        assert parse_mikey_base64(mikey).key == sdp_key
        ours = MasterKey.generate()
        message = build_mikey(ours, [CryptoSession(0, 0x51)], 1, 0, bytes(16))
        headers = {"Transport": f"RTP/SAVP;unicast;{ports}", "KeyMgmt": format_key_mgmt(url, message)}
        status, reply, _ = client.request("SETUP", url + "/trackID=0", headers)
        assert status == 200 and reply["transport"].startswith("RTP/SAVP")
        session = reply["session"].split(";")[0]
        assert client.request("PLAY", url, {"Session": session})[0] == 200
        rtp.settimeout(10)
        clear = Unprotector(sdp_key)
        first = clear.rtp(rtp.recv(65536))
        assert first is not None
        ssrc = first[8:12]
        server_port = parse_transport(reply["transport"])[0].server_port  # with --workers: worker k's
        assert server_port is not None
        server_rtcp = ("127.0.0.1", server_port[1])
        report = bytes([0x81, 201, 0, 7]) + b"\x00\x00\x00\x51" + ssrc + bytes(20)
        dropped_before = metric(srtp_server, 'streamd_srtp_dropped_total{reason="auth"}')
        good_before = metric(srtp_server, "streamd_srtp_packets_authenticated_total")
        sender = Protector(ours)
        tampered = bytearray(sender.rtcp(report))
        tampered[-1] ^= 0xFF
        rtcp.sendto(bytes(tampered), server_rtcp)
        rtcp.sendto(report, server_rtcp)  # plain RTCP in an SRTP session
        wait_until(
            lambda: metric(srtp_server, 'streamd_srtp_dropped_total{reason="auth"}') >= dropped_before + 1,
            "bad SRTCP tag counted",
        )
        rtcp.sendto(sender.rtcp(report), server_rtcp)
        wait_until(
            lambda: metric(srtp_server, "streamd_srtp_packets_authenticated_total") >= good_before + 1,
            "good SRTCP authenticated",
        )
        for _ in range(20):  # the session carries on: more SRTP keeps coming
            assert clear.rtp(rtp.recv(65536)) is not None
        client.request("TEARDOWN", url, {"Session": session})
    finally:
        rtp.close()
        rtcp.close()
        client.close()


def test_no_key_leaves_in_clear(srtp_server: ServerProcess) -> None:
    """The SDP over plain RTSP has no keys; over RTSPS it has them (base64 of 30 bytes)."""
    plain = RawClient(srtp_server.port, tls=False)
    _, _, body = plain.request("DESCRIBE", srtp_server.url("bframes.mp4"))
    plain.close()
    assert b"a=crypto" not in body and b"key-mgmt" not in body and b"RTP/AVP" in body
    secure = RawClient(srtp_server.rtsps_port, tls=True)  # type: ignore[attr-defined]
    _, _, body = secure.request("DESCRIBE", rtsps(srtp_server, "bframes.mp4"))
    secure.close()
    keys = re.findall(rb"inline:(\S+)", body)
    assert len(keys) == 2 and all(len(base64.b64decode(k)) == 30 for k in keys)
    assert body.count(b"RTP/SAVP") == 2


def test_pyav_and_gstreamer_tcp_srtp_inside_rtsps(srtp_server: ServerProcess, tmp_path: Path) -> None:
    """PyAV (its own FFmpeg) reads a=crypto like ffmpeg; GStreamer with protocols=tcp asks
    RTP/SAVP/TCP with its MIKEY key: both decode every frame of SRTP carried inside TLS."""
    import av

    source = srtp_server.media / "bframes.mp4"
    frames = source_video_frame_count(source)
    before = srtp_server.log().count("over TCP interleaved")
    with av.open(rtsps(srtp_server, "bframes.mp4"), timeout=30) as container:
        assert sum(1 for _ in container.decode(container.streams.video[0])) == frames
    need("gst-launch-1.0")
    video = tmp_path / "v.yuv"
    run_pipeline(
        f"rtspsrc location={rtsps(srtp_server, 'bframes.mp4')} protocols=tcp tls-validation-flags=0 "
        f"! rtph264depay ! h264parse ! avdec_h264 ! videoconvert ! video/x-raw,format=I420 "
        f"! filesink location={video}"
    )
    assert video.stat().st_size == 320 * 240 * 3 // 2 * frames
    lines = [line for line in srtp_server.log().splitlines() if "over TCP interleaved" in line]
    assert len(lines) >= before + 4 and all("SRTP AES_CM_128_HMAC_SHA1_80" in line for line in lines[before:])


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_the_relay_pulls_srtp_from_an_rtsps_upstream(
    srtp_server: ServerProcess, tmp_path: Path, transport: str
) -> None:
    """The relay reads the upstream's keys from its SDP, SETUPs RTP/SAVP with a key of its own in
    KeyMgmt, decrypts what arrives and serves it to a plain reader."""
    need("ffmpeg")
    video = tmp_path / "v.h264"
    subprocess.run(
        ["ffmpeg", "-nostdin", "-loglevel", "error", "-rtsp_transport", "tcp",
         "-i", srtp_server.url(f"relay/{transport}"), "-t", "1.5",
         "-map", "0:v", "-c", "copy", "-f", "h264", "-y", str(video)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    got = received_video_nals(video)
    expected = source_video_nals(srtp_server.media / "bframes.mp4")
    assert len(got) >= 10 and any(expected[i : i + len(got)] == got for i in range(len(expected)))
    over = "UDP" if transport == "udp" else "TCP interleaved"
    assert re.search(rf"SETUP trackID=0 \(h264\) over {over} \S+ SRTP", srtp_server.log())
