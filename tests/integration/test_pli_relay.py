"""A WHEP viewer's PLI reaches an RTSP publisher as RTCP PLI naming its SSRC: a raw publisher
over UDP (on its RTCP port) and over TCP (on its interleaved RTCP channel); aiortc as the viewer.
A burst of 20 PLIs makes one."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
from collections.abc import Callable, Iterator

import pytest
from aiortc.rtp import RTCP_PSFB_PLI, RtcpPsfbPacket, RtcpRrPacket, RtpPacket

from streamd.live.keyframe_relay import PLI_INTERVAL
from streamd.rtp.rtcp import parse_compound
from streamd.rtsp.headers import parse_transport
from streamd.rtsp.message import InterleavedFrame
from tests.integration.conftest import ServerProcess, need, start_live_only, start_server, stop_all, udp_pair
from tests.integration.gst import live_publisher
from tests.integration.whep_client import WhepClient
from tests.rtsp_client import RawRtspClient
from tests.waiting import until

pytestmark = pytest.mark.integration

SSRC = 0x5EED1234
SDP = (
    b"v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=cam\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    b"m=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n"
    b"a=fmtp:96 packetization-mode=1;profile-level-id=42C00A;"
    b"sprop-parameter-sets=Z0LACtkChH5cBEAAAAMAQAAABQPEiZI=,aMuDyyA=\r\n"
    b"a=control:streamid=0\r\n"
)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    proc = start_live_only(tmp_path_factory.mktemp("pli"), "webrtc_connect_timeout = 10\n")
    yield proc
    stop_all(proc)


def _rtp(seq: int) -> bytes:
    packet = RtpPacket(payload_type=96, marker=1, sequence_number=seq, timestamp=9000 * seq, ssrc=SSRC)
    packet.payload = bytes([0x65, 0x88, 0x84, 0x00])  # an IDR slice (never decoded: no viewer gets it)
    return packet.serialize()


def _plis(data: bytes) -> list[RtcpPsfbPacket]:
    packets = parse_compound(data)
    assert packets and isinstance(packets[0], RtcpRrPacket)  # compound: RR first
    return [p for p in packets if isinstance(p, RtcpPsfbPacket) and p.fmt == RTCP_PSFB_PLI]


class _Datagrams(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.received: list[bytes] = []

    def datagram_received(self, data: bytes, addr: tuple) -> None:
        self.received.append(data)


async def _view_and_burst(server: ServerProcess, path: str) -> None:
    """A WHEP viewer of ``path`` that connects and sends 20 PLIs about its video at once."""
    client = WhepClient(server.http(f"whep/{path}"))
    try:
        await client.start(("video",))
        assert client.status == 201, client.answer
        await until(lambda: client.pc.connectionState == "connected", "the viewer connected")
        await client.send_plis(20)
    finally:
        await client.close()


async def _announce(client: RawRtspClient, path: str, transport: str) -> int | None:
    """Publish ``path``: the server's RTP port for it (UDP; with --workers, worker k's rtp_port + 2 k)."""
    headers = {"Content-Type": "application/sdp"}
    assert (await client.request("ANNOUNCE", client.url(path), headers, SDP)).status == 200
    setup = await client.request("SETUP", client.url(f"{path}/streamid=0"), {"Transport": transport})
    assert setup.status == 200, setup
    assert (await client.request("RECORD", client.url(path))).status == 200
    server_port = parse_transport(setup.headers["Transport"])[0].server_port
    return server_port[0] if server_port else None


async def _one_pli(received: Callable[[], list[bytes]]) -> None:
    await until(lambda: any(_plis(d) for d in received()), "a PLI at the publisher")
    await asyncio.sleep(0.3)  # a second PLI would come now if the burst were not limited
    plis = [p for d in received() for p in _plis(d)]
    assert len(plis) == 1 and plis[0].media_ssrc == SSRC


def test_viewer_pli_reaches_a_udp_publisher(server: ServerProcess) -> None:
    async def run() -> None:
        rtp_sock, rtcp_sock = udp_pair()
        loop = asyncio.get_running_loop()
        rtcp_t, rtcp = await loop.create_datagram_endpoint(_Datagrams, sock=rtcp_sock)
        rtp_t, _ = await loop.create_datagram_endpoint(asyncio.DatagramProtocol, sock=rtp_sock)
        client = await RawRtspClient("127.0.0.1", server.port).connect()
        try:
            port = rtp_sock.getsockname()[1]
            server_rtp = await _announce(
                client, "live/pli-udp", f"RTP/AVP;unicast;client_port={port}-{port + 1};mode=record"
            )
            assert server_rtp is not None
            for seq in range(3):
                rtp_t.sendto(_rtp(seq), ("127.0.0.1", server_rtp))
            await _view_and_burst(server, "live/pli-udp")
            await _one_pli(lambda: rtcp.received)
        finally:
            await client.close()
            rtp_t.close()
            rtcp_t.close()

    asyncio.run(run())


def test_viewer_pli_reaches_a_tcp_publisher(server: ServerProcess) -> None:
    async def run() -> None:
        client = await RawRtspClient("127.0.0.1", server.port).connect()
        try:
            await _announce(client, "live/pli-tcp", "RTP/AVP/TCP;unicast;interleaved=0-1;mode=record")
            for seq in range(3):
                await client.send_raw(bytes(InterleavedFrame(0, _rtp(seq))))
            await _view_and_burst(server, "live/pli-tcp")
            frames = client.received.frames
            await _one_pli(lambda: [d for _, c, d in frames if c == 1])
            assert all(c == 1 for _, c, _ in frames)  # nothing else came on the publisher's connection
        finally:
            await client.close()

    asyncio.run(run())


def _has_idr(payload: bytes) -> bool:
    """An RTP H.264 payload (RFC 6184) starts or carries an IDR picture."""
    kind = payload[0] & 0x1F
    if kind == 28:  # FU-A: its first fragment
        return len(payload) > 1 and payload[1] & 0x80 != 0 and payload[1] & 0x1F == 5
    if kind == 24:  # STAP-A
        pos = 1
        while pos + 3 <= len(payload):
            size = int.from_bytes(payload[pos : pos + 2], "big")
            if payload[pos + 2] & 0x1F == 5:
                return True
            pos += 2 + size
        return False
    return kind == 5


def _keyframes_around_pli(server: ServerProcess, path: str) -> tuple[int, int]:
    """A WHEP viewer of ``path``: IDR pictures it got before its PLI (the one its wait at the
    keyframe gate asked for, as the stream has no other for minutes) and after it."""

    async def run() -> tuple[int, int]:
        client = WhepClient(server.http(f"whep/{path}"))
        video = client.packets["video"]

        def idrs() -> set[int]:
            return {timestamp for _, timestamp, _, payload in video if _has_idr(payload)}

        try:
            await client.start(("video",))
            assert client.status == 201, client.answer
            await until(lambda: client.pc.connectionState == "connected", "the viewer connected")
            # joining mid-GOP, the viewer waits at the keyframe gate, which asks the publisher for
            # one: that keyframe first, then a PLI past the path's rate limit (PLI_INTERVAL)
            await until(idrs, "the keyframe the viewer waited for")
            await asyncio.sleep(PLI_INTERVAL + 0.1)
            before = len(idrs())
            await client.send_plis()
            await until(lambda: len(idrs()) > before, "a keyframe after the PLI")
            return before, len(idrs())
        finally:
            await client.close()

    return asyncio.run(run())


def _gstreamer_publisher(server: ServerProcess, path: str) -> contextlib.AbstractContextManager[None]:
    """rtspclientsink publishing ``path`` over UDP with one keyframe in 10,000 frames (400 s),
    unless asked: its RTP session turns a PLI into a force-key-unit event for openh264enc. Over
    UDP only: over TCP rtspclientsink reads the server's interleaved data and drops it ("ignoring
    data message", GStreamer 1.22)."""
    need("gst-launch-1.0")
    pipeline = (
        "videotestsrc is-live=true ! video/x-raw,width=160,height=120,framerate=25/1 ! "
        "openh264enc gop-size=10000 ! h264parse config-interval=-1 ! "
        f"rtspclientsink protocols=udp location={server.url(path)}"
    )
    return live_publisher(pipeline, lambda: f"{path} is live" in server.log())


def test_gstreamer_publisher_answers_the_relayed_pli_with_a_keyframe(server: ServerProcess) -> None:
    path = "live/gst-pli"
    with _gstreamer_publisher(server, path):
        before, after = _keyframes_around_pli(server, path)
        assert before >= 1 and after > before


def _read_frames(url: str, frames: int = 5, timeout: float = 60) -> None:
    """ffmpeg reads ``frames`` pictures of ``url`` (it never asks for a keyframe itself: its RTSP
    demuxer sends no PLI/FIR for H.264), within ``timeout``, far below the publisher's GOP."""
    command = ["ffmpeg", "-nostdin", "-loglevel", "error", "-rtsp_transport", "tcp", "-i", url,
               "-frames:v", str(frames), "-f", "null", "-"]  # fmt: skip
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise AssertionError(
            f"no keyframe within {timeout:g} s: the PLI did not reach the publisher"
        ) from None
    assert result.returncode == 0, result.stderr


def test_a_reader_joining_mid_gop_gets_a_keyframe_asked_for(server: ServerProcess) -> None:
    """Readers that join a 400 s GOP wait at the keyframe gate, which asks the publisher: each
    of three ffmpeg readers in turn starts within a round trip or so, not 400 s."""
    need("ffmpeg")
    path = "live/gst-gate"
    with _gstreamer_publisher(server, path):
        for _ in range(3):
            _read_frames(server.url(path))


@pytest.mark.parametrize("upstream", ["tcp", "udp"])
def test_a_relay_passes_keyframe_requests_upstream(
    server: ServerProcess, tmp_path_factory: pytest.TempPathFactory, upstream: str
) -> None:
    """A second server relays the GStreamer path. The first reader of the relay starts its pull
    (the first server's gate asks the publisher); the second joins the relayed path mid-GOP: its
    wait at the relay's gate becomes an RTCP PLI upstream on the relay's RTCP channel, which the
    first server passes to the publisher, so it too starts at once. The relay pulls over TCP
    (PLI on its interleaved RTCP channel) or UDP (from its RTCP socket to the upstream's)."""
    need("ffmpeg")
    path = f"live/gst-relayed-{upstream}"
    tmp = tmp_path_factory.mktemp("pli-relay")
    (tmp / "media").mkdir()
    config = tmp / "relay.toml"
    config.write_text(
        f'[paths."relay/gst"]\nsource = "{server.url(path)}"\nsource_transport = "{upstream}"\n'
        "source_close_after = 30\n"
    )
    with _gstreamer_publisher(server, path):
        relay = start_server(tmp / "media", tmp, "--config", str(config))
        try:
            _read_frames(relay.url("relay/gst"))  # starts the pull
            assert "relay relay/gst" in relay.log() and " online " in relay.log()
            _read_frames(relay.url("relay/gst"))  # the relay keeps pulling: this one joins mid-GOP
        finally:
            stop_all(relay)
