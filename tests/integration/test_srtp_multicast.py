"""Multicast SRTP with a real player, inside a network namespace of our own: ffmpeg joins the group
from the SDP it fetches over HTTPS (the group's key in ``a=crypto``), decrypts, and gets what was
published exactly, while a socket of the test in the group sees no piece of it in clear; the same
SDP over plain HTTP is refused, as is a plain multicast SETUP on the encrypted path."""

from __future__ import annotations

import shutil
import socket
import ssl
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import ServerProcess, free_tcp_port, need
from tests.integration.netns import NetNamespace
from tests.integration.source import source_video_nals
from tests.integration.test_live import Publisher
from tests.integration.test_multicast import (  # noqa: F401 - fixtures, used by name
    _assert_exact,
    _drain_into,
    _group_socket,
    _inside,
    _play_each_stream,
    _serve,
    clip_dir,
    netns,
)
from tests.tlscerts import CertPair
from tests.waiting import wait_until

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def srtp_mc_server(
    netns: NetNamespace,  # noqa: F811
    clip_dir: Path,  # noqa: F811
    tls_pair: CertPair,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ServerProcess]:
    folder = tmp_path_factory.mktemp("srtp-mc")
    shutil.copy(tls_pair.cert, folder / "server.crt")
    shutil.copy(tls_pair.key, folder / "server.key")
    with netns.entered():
        https_port = free_tcp_port()
    proc = _serve(
        netns,
        clip_dir,
        folder,
        "--multicast-ports", "41200-41299",
        "--tls-cert", str(folder / "server.crt"),
        "--tls-key", str(folder / "server.key"),
        "--https-port", str(https_port),
        settings='encryption = "optional"\n',
    )  # fmt: skip
    proc.https_port = https_port  # type: ignore[attr-defined]
    yield proc
    code = proc.stop()
    assert "Traceback" not in proc.log() and code == 0, proc.log()


def _https(server: ServerProcess, path: str) -> str:
    return f"https://127.0.0.1:{server.https_port}/{path}"  # type: ignore[attr-defined]


def _get_https(url: str) -> str:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return urllib.request.urlopen(url, timeout=10, context=context).read().decode()


def test_ffmpeg_joins_the_srtp_group_from_the_https_sdp(
    srtp_mc_server: ServerProcess, tmp_path: Path
) -> None:
    need("ffmpeg")
    server = srtp_mc_server
    publisher = Publisher(server, "live/always")  # multicast = true: sent while online
    group_sock = None
    try:
        # (with --workers, the publisher's worker asks the parent for the group first)
        (group,) = wait_until(
            lambda: [g for g in server.api("multicast")["groups"] if g["path"] == "live/always"],
            "the group sent",
        )
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(server.http("sdp/live/always?multicast=1"), timeout=30)
        assert refused.value.code == 403  # the key never goes out over plain HTTP
        sdp = _get_https(_https(server, "sdp/live/always?multicast=1"))
        assert "RTP/SAVP" in sdp and "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:" in sdp
        video_port = group["tracks"][0]["port"]
        group_sock = _group_socket(group["group"], video_port)
        video, audio = tmp_path / "v.h264", tmp_path / "a.aac"
        whitelist = "file,http,https,tcp,tls,udp,rtp,srtp,crypto"
        sdp_url = _https(server, "sdp/live/always?multicast=1")
        _play_each_stream(["-protocol_whitelist", whitelist, "-i", sdp_url], video, audio)
        seen: list[bytes] = []
        _drain_into(group_sock, seen)
    finally:
        publisher.stop()
        if group_sock is not None:
            group_sock.close()
    _assert_exact(server, video, audio)
    windows = [nal[8:40] for nal in source_video_nals(server.media / "clip.mp4") if len(nal) >= 48]
    assert len(seen) >= 20 and not any(w in d for w in windows for d in seen)


def test_a_plain_multicast_setup_on_the_encrypted_path_is_refused(srtp_mc_server: ServerProcess) -> None:
    server = srtp_mc_server
    publisher = Publisher(server, "live/enc")
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
            request = f"SETUP {server.url('live/enc/trackID=0')} RTSP/1.0\r\nCSeq: 1\r\n"
            sock.sendall((request + "Transport: RTP/AVP;multicast\r\n\r\n").encode())
            status_line = sock.recv(4096).split(b"\r\n")[0]
        assert status_line.split()[1] == b"461"
        wait_until(lambda: "multicast group is sent as SRTP" in server.log(), "the refusal logged")
    finally:
        publisher.stop()
