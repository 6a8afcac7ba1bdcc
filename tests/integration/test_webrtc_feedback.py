"""WebRTC viewers with real peers: NACKs answered bit-exact from the path's packet history
(aiortc viewers behind a user-space lossy hop; Chromium behind one, its getStats counting its
NACKs and no packet lost for good), and a viewer moved onto the path's conversion when B-frames
show after it came (ffmpeg publishing). Keyframes asked of the source for readers that join
mid-GOP are in ``test_pli_relay.py``."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import av
import pytest

from tests.h264_bits import slice_type
from tests.integration.conftest import ServerProcess, need, start_live_only, stop_all
from tests.integration.whep_client import WhepClient, h264_access_units
from tests.shared_files import made_once
from tests.waiting import until, wait_until

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    proc = start_live_only(tmp_path_factory.mktemp("feedback"), "webrtc_connect_timeout = 10\n")
    yield proc
    stop_all(proc)


def _publish(server: ServerProcess, path: str, *source: str) -> subprocess.Popen[bytes]:
    """ffmpeg publishing ``source`` to ``path`` in real time, once the path is live."""
    need("ffmpeg")
    command = ["ffmpeg", "-nostdin", "-loglevel", "error", "-re", *source, "-f", "rtsp",
               "-rtsp_transport", "tcp", server.url(path)]  # fmt: skip
    publisher = subprocess.Popen(command)
    wait_until(lambda: f"{path} is live" in server.log() or publisher.poll() is not None, "the publisher")
    assert publisher.poll() is None, server.log()
    return publisher


def _is_rtp(data: bytes) -> bool:
    return len(data) >= 12 and data[0] & 0xC0 == 0x80 and not 192 <= data[1] <= 223


class Viewer(WhepClient):
    """A WHEP viewer of video. With ``drop_every``, its ICE transport drops the first copy of every
    such RTP packet (by sequence number, readable in SRTP's clear header) before SRTP sees it, and
    keeps what came instead."""

    def __init__(self, url: str, drop_every: int = 0) -> None:
        super().__init__(url)
        self.drop_every = drop_every
        self.dropped: dict[int, bytes] = {}  # sequence number -> the SRTP packet dropped
        self.again: dict[int, list[bytes]] = {}  # sequence number -> its copies that came later

    async def start(self, kinds: tuple[str, ...] = ("video",)) -> None:
        await super().start(kinds)
        assert self.status == 201, self.answer

    def prepare(self) -> None:
        if not self.drop_every:
            return
        ice = self.receivers["video"].transport.transport
        receive = ice._recv
        video = self.packets["video"]

        async def lossy() -> bytes:
            while True:
                data = await receive()
                if not _is_rtp(data):
                    return data
                seq = int.from_bytes(data[2:4], "big")
                if seq in self.dropped:
                    self.again.setdefault(seq, []).append(data)
                elif seq % self.drop_every == 0 and len(video) > 10:
                    self.dropped[seq] = data
                    continue
                return data

        ice._recv = lossy  # type: ignore[method-assign]


def test_nacks_get_the_lost_packets_bit_exact_from_the_paths_history(server: ServerProcess) -> None:
    """Two viewers each lose every 23rd packet; the copies their NACKs bring are, SRTP
    and all, the very bytes of the packets lost (AES-CM and the HMAC over the same header and
    payload under the same key give the same bytes), so the resend rebuilt from the path's one
    history carries this viewer's header and the path's payload exactly."""
    publisher = _publish(
        server, "live/nack", "-f", "lavfi", "-i", "testsrc2=s=320x240:r=25", "-t", "30", "-c:v", "libx264",
        "-preset", "ultrafast", "-bf", "0", "-g", "25", "-b:v", "600k", "-pix_fmt", "yuv420p",
    )  # fmt: skip

    async def run() -> None:
        viewers = [Viewer(server.http("whep/live/nack"), drop_every=23) for _ in range(2)]
        for viewer in viewers:
            await viewer.start()
        # aiortc's receiver NACKs what it misses (its NackGenerator, RFC 4585 generic NACK)
        await until(
            lambda: all(len(v.dropped) >= 6 and set(v.again) >= set(v.dropped) for v in viewers),
            "every lost packet resent",
            30,
        )
        for viewer in viewers:
            for seq, original in viewer.dropped.items():
                assert all(copy == original for copy in viewer.again[seq]), seq
            received = {p[0] for p in viewer.packets["video"]}
            assert set(viewer.dropped) <= received  # SRTP took the resend: authentic
            await viewer.close()

    try:
        asyncio.run(run())
    finally:
        publisher.terminate()
        publisher.wait(10)
    wait_until(lambda: server.log().count("resent for NACKs") >= 2, "the sessions' end")


@pytest.fixture(scope="module")
def late_bframes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """4 s of H.264 without B-frames, then 8 s of libx264 with 2 B-frames: one MPEG-TS made of
    two, timestamps going on (the second part offset by the first's length). Made once per run:
    the serial Chromium test reuses it."""
    need("ffmpeg")
    return made_once(tmp_path_factory, "late-bframes-4-8", _make_late_bframes) / "both.ts"


def _make_late_bframes(tmp_path: Path) -> None:
    parts = []
    for name, seconds, options in (
        ("plain", 4, ("-bf", "0")),
        ("bframes", 8, ("-bf", "2", "-x264-params", "b-adapt=0")),
    ):
        offset = ("-output_ts_offset", "4") if parts else ()
        out = tmp_path / f"{name}.ts"
        subprocess.run(
            ["ffmpeg", "-nostdin", "-loglevel", "error",
             "-f", "lavfi", "-i", f"testsrc2=s=320x240:r=25:d={seconds}",
             "-c:v", "libx264", "-preset", "veryfast", *options, "-g", "25", "-pix_fmt", "yuv420p", *offset,
             "-f", "mpegts", "-y", str(out)],
            check=True, timeout=120,
        )  # fmt: skip
        parts.append(out.read_bytes())
    (tmp_path / "both.ts").write_bytes(b"".join(parts))


def test_a_viewer_that_came_before_b_frames_showed_moves_onto_the_conversion(
    server: ServerProcess, late_bframes: Path
) -> None:
    """ffmpeg publishes 4 s of H.264 without B-frames, then libx264 with 2 B-frames (one MPEG-TS
    made of two): the viewer that came during the first part gets the publisher's stream, then,
    from a keyframe of the path's one conversion, constrained baseline in presentation order,
    its sequence numbers and timestamps going on (same payload type, no new offer)."""
    path = "live/late-bframes"
    publisher = _publish(server, path, "-i", str(late_bframes), "-c", "copy")

    async def run() -> None:
        viewer = Viewer(server.http(f"whep/{path}"))
        await viewer.start()
        video = viewer.packets["video"]
        await until(lambda: sum(p[2] for p in video) >= 5, "pictures before B-frames", 20)
        assert f"{path}: track 0 has pictures out of order" not in server.log()  # it came before
        await until(lambda: f"{path} goes on from its H.264 conversion" in server.log(), "the switch", 30)
        count = len(video)
        await until(lambda: sum(p[2] for p in video[count:]) >= 25, "converted pictures", 20)
        await viewer.close()
        packets = sorted(video, key=lambda p: (p[0] - video[0][0]) & 0xFFFF)
        seqs = [(p[0] - packets[0][0]) & 0xFFFF for p in packets]
        assert seqs == list(range(len(seqs)))  # one numbering, no gap, across the switch
        units = h264_access_units(packets)
        profiles = [n[1] for _, unit in units for n in unit if n[0] & 0x1F == 7]
        assert profiles[0] == 100 and profiles[-1] == 66  # the publisher's High, then baseline
        switch = next(
            i for i, (_, unit) in enumerate(units) if any(n[0] & 0x1F == 7 and n[1] == 66 for n in unit)
        )
        before, after = units[:switch], units[switch:]
        stamps = [ts for ts, _ in after]
        assert stamps == sorted(stamps) and stamps[0] > max(ts for ts, _ in before)  # never back
        decoder = av.CodecContext.create("h264", "r")
        decoded = 0
        for _, unit in after:
            assert all(slice_type(n) % 5 != 1 for n in unit if n[0] & 0x1F in (1, 5))  # no B
            decoded += len(decoder.decode(av.Packet(b"".join(b"\x00\x00\x00\x01" + n for n in unit))))
        assert decoded >= len(after) - 1  # decodable from the switch on, no reorder delay
        assert server.log().count(f"{path}: track 0 converted to H.264") == 1

    try:
        asyncio.run(run())
    finally:
        publisher.terminate()
        publisher.wait(10)


class _Datagrams(asyncio.DatagramProtocol):
    def __init__(self, on_data) -> None:  # type: ignore[no-untyped-def]
        self.on_data = on_data

    def datagram_received(self, data: bytes, addr: tuple) -> None:
        self.on_data(data, addr)


class LossyHop:
    """A user-space UDP hop between a browser and the server's ICE socket: the browser is told
    only of the hop; the server sees it as a peer-reflexive candidate. Toward the browser, the
    first copy of every ``drop_every``-th RTP packet of ``ssrc`` (SRTP's header is clear) is lost."""

    def __init__(self, host: str, server: tuple[str, int], ssrc: int, drop_every: int) -> None:
        self.host, self.server, self.ssrc, self.drop_every = host, server, ssrc, drop_every
        self.browser: tuple | None = None
        self.dropped: set[int] = set()
        self.resent: set[int] = set()

    async def start(self) -> int:
        loop = asyncio.get_running_loop()
        self.front, _ = await loop.create_datagram_endpoint(
            lambda: _Datagrams(self._from_browser), local_addr=(self.host, 0)
        )
        self.back, _ = await loop.create_datagram_endpoint(
            lambda: _Datagrams(self._from_server), local_addr=(self.host, 0)
        )
        return self.front.get_extra_info("sockname")[1]

    def _from_browser(self, data: bytes, addr: tuple) -> None:
        self.browser = addr
        self.back.sendto(data, self.server)

    def _from_server(self, data: bytes, addr: tuple) -> None:
        if _is_rtp(data) and int.from_bytes(data[8:12], "big") == self.ssrc:
            seq = int.from_bytes(data[2:4], "big")
            if seq in self.dropped:
                self.resent.add(seq)
            elif seq % self.drop_every == 0:
                self.dropped.add(seq)
                return
        if self.browser is not None:
            self.front.sendto(data, self.browser)

    def close(self) -> None:
        self.front.close()
        self.back.close()


# stands for RECVONLY_OFFER_JS in a page's script: a receive-only video peer ``pc`` playing into a
# <video>, its offer made and its candidates gathered
OFFER = "  // offer\n"
RECVONLY_OFFER_JS = """\
  pc.addTransceiver('video', {direction: 'recvonly'});
  const video = document.createElement('video');
  video.muted = true; video.autoplay = true; document.body.appendChild(video);
  pc.ontrack = (e) => { video.srcObject = e.streams[0]; };
  await pc.setLocalDescription(await pc.createOffer());
  await new Promise((done) => {
    if (pc.iceGatheringState === 'complete') return done();
    pc.onicegatheringstatechange = () => pc.iceGatheringState === 'complete' && done();
    setTimeout(done, 3000);
  });
"""

CHROMIUM_OFFER_JS = """
window.nack = {offer: null, error: null, samples: []};
(async () => {
  const pc = window.pc = new RTCPeerConnection();
  // offer
  nack.offer = pc.localDescription.sdp;
})().catch((e) => { nack.error = String(e); });
""".replace(OFFER, RECVONLY_OFFER_JS)

CHROMIUM_ANSWER_JS = """
(async () => {
  await pc.setRemoteDescription({type: 'answer', sdp: %r});
  setInterval(async () => {
    (await pc.getStats()).forEach((r) => {
      if (r.type === 'inbound-rtp' && r.kind === 'video') {
        nack.samples.push({frames: r.framesDecoded || 0, nacks: r.nackCount || 0,
                           lost: r.packetsLost || 0, freezes: r.freezeCount || 0});
      }
    });
  }, 250);
})().catch((e) => { nack.error = String(e); });
"""


@pytest.mark.serial  # real-time playback: frames must keep coming
def test_chromium_nacks_are_answered_from_the_paths_history(server: ServerProcess, tmp_path: Path) -> None:
    """Chromium behind a lossy hop that loses every 20th video packet: its NACKs (getStats'
    nackCount) bring the lost packets again, it loses none for good, and pictures keep coming."""
    need("chromium")
    from tests.integration.chromium import chromium_tab

    path = "live/nack-chromium"
    publisher = _publish(
        server, path, "-f", "lavfi", "-i", "testsrc2=s=320x240:r=25", "-t", "30", "-c:v", "libx264",
        "-preset", "ultrafast", "-profile:v", "baseline", "-bf", "0", "-g", "25", "-b:v", "800k",
        "-pix_fmt", "yuv420p",
    )  # fmt: skip

    async def run() -> None:
        async with chromium_tab(tmp_path) as tab, aiohttp.ClientSession() as http:
            await tab.evaluate(CHROMIUM_OFFER_JS)
            offer = await tab.wait_for("nack.error || nack.offer", 20)
            headers = {"Content-Type": "application/sdp"}
            async with http.post(server.http(f"whep/{path}"), data=offer, headers=headers) as response:
                assert response.status == 201, await response.text()
                answer, location = await response.text(), response.headers["Location"]
            lines = answer.splitlines()
            host, port = next(
                (c.split()[4], int(c.split()[5]))
                for c in lines
                if c.startswith("a=candidate:") and "." in c.split()[4]
            )
            ssrc = int(next(line for line in lines if line.startswith("a=ssrc:"))[7:].split()[0])
            hop = LossyHop(host, (host, port), ssrc, drop_every=20)
            front = await hop.start()
            try:
                only_hop = [line for line in lines if not line.startswith("a=candidate:")]
                at = only_hop.index(next(line for line in only_hop if line.startswith("a=ice-ufrag:")))
                only_hop.insert(at, f"a=candidate:1 1 udp 2130706431 {host} {front} typ host")
                await tab.evaluate(CHROMIUM_ANSWER_JS % "\r\n".join([*only_hop, ""]))
                await tab.wait_for(
                    "nack.error || (nack.samples.length && nack.samples.at(-1).frames > 0)", 30
                )
                await until(lambda: len(hop.dropped) >= 10, "packets lost on the hop", 30)
                await asyncio.sleep(1)  # the last ones' NACKs and resends
                result = await tab.evaluate("JSON.parse(JSON.stringify(nack))")
            finally:
                hop.close()
            async with http.delete(server.http(location.lstrip("/"))) as response:
                assert response.status == 200
        assert result["error"] is None, result
        last = result["samples"][-1]
        assert last["nacks"] > 0, last  # Chromium asked ...
        assert len(hop.resent) >= len(hop.dropped) - 2, (hop.dropped, hop.resent)  # ... and got them
        assert last["lost"] <= 2, last  # none lost for good (at most the last ones in flight)
        frames = [s["frames"] for s in result["samples"] if s["frames"] > 0]
        assert all(b > a for a, b in zip(frames, frames[2:], strict=False)), frames  # pictures go on

    try:
        asyncio.run(run())
    finally:
        publisher.terminate()
        publisher.wait(10)
    wait_until(lambda: f"{path} ended" in server.log(), "the session's end")
    line = next(line for line in server.log().splitlines() if f"{path} ended" in line)
    assert int(line.split(" resent for NACKs")[0].rsplit(", ", 1)[1]) > 0, line


CHROMIUM_VIEWER_JS = """
window.viewer = {error: null, samples: []};
(async () => {
  const pc = new RTCPeerConnection();
  // offer
  const response = await fetch(%r, {method: 'POST', body: pc.localDescription.sdp,
                                    headers: {'Content-Type': 'application/sdp'}});
  const answer = await response.text();
  if (response.status !== 201) { viewer.error = answer; return; }
  await pc.setRemoteDescription({type: 'answer', sdp: answer});
  setInterval(async () => {
    (await pc.getStats()).forEach((r) => {
      if (r.type === 'inbound-rtp' && r.kind === 'video') {
        viewer.samples.push({frames: r.framesDecoded || 0, freezes: r.freezeCount || 0,
                             width: r.frameWidth || 0, dropped: r.framesDropped || 0});
      }
    });
  }, 250);
})().catch((e) => { viewer.error = String(e); });
""".replace(OFFER, RECVONLY_OFFER_JS)


@pytest.mark.serial  # real-time playback: frames must keep coming
def test_chromium_keeps_playing_when_moved_onto_the_conversion(
    server: ServerProcess, late_bframes: Path, tmp_path: Path
) -> None:
    """Chromium, which came before the B-frames, plays on across the move to the converted stream
    (same payload type, no new offer): decoded pictures keep coming at the frame rate."""
    need("chromium")
    from tests.integration.chromium import chromium_tab

    path = "live/late-bframes-chromium"
    publisher = _publish(server, path, "-i", str(late_bframes), "-c", "copy")

    async def run() -> dict:
        async with chromium_tab(tmp_path) as tab:
            await tab.evaluate(CHROMIUM_VIEWER_JS % server.http(f"whep/{path}"))
            await tab.wait_for(
                "viewer.error || (viewer.samples.length && viewer.samples.at(-1).frames > 0)", 30
            )
            assert f"{path}: track 0 has pictures out of order" not in server.log()  # it came before
            await until(lambda: f"{path} goes on from its H.264 conversion" in server.log(), "the switch", 30)
            switched = len(await tab.evaluate("viewer.samples"))
            await asyncio.sleep(3)
            result = await tab.evaluate("JSON.parse(JSON.stringify(viewer))")
            result["switched"] = switched
            return result

    try:
        result = asyncio.run(run())
    finally:
        publisher.terminate()
        publisher.wait(10)
    assert result["error"] is None, result
    after = result["samples"][result["switched"] :]
    frames = [s["frames"] for s in after]
    assert len(frames) >= 10 and all(b > a for a, b in zip(frames, frames[2:], strict=False)), frames
    assert frames[-1] - frames[0] >= 0.6 * 25 * (len(frames) - 1) / 4, frames  # about the frame rate
    assert after[-1]["width"] == 320 and after[-1]["freezes"] <= 1, after[-1]
