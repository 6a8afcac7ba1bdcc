"""Issue 12, item 10: small ways a client got a 500, a silent hang, a forged log line or a
broken /mp4, each against the real server, with the connection (and everyone else) carrying on."""

from __future__ import annotations

import asyncio
import io
import subprocess
import urllib.request
from collections.abc import Iterator

import av
import pytest

from tests import mediagen
from tests.integration.conftest import ServerProcess, need, start_server, stop_all
from tests.rtsp_client import RawRtspClient

pytestmark = pytest.mark.integration

FFMPEG = ("ffmpeg", "-nostdin", "-loglevel", "error", "-f", "lavfi", "-i", "sine=d=2")
HEAD = "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=x\r\nt=0 0\r\n"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    need("ffmpeg")
    media = tmp_path_factory.mktemp("small-media")
    mediagen.make_h264_aac_mp4(media / "clip.mp4", seconds=1)
    for name, channels in (("tone.wav", "1"), ("stereo.wav", "2")):
        subprocess.run(
            [*FFMPEG, "-ac", channels, "-c:a", "pcm_s16le", "-y", str(media / name)],
            check=True,
            timeout=60,
        )
    proc = start_server(media, tmp_path_factory.mktemp("small-server"))
    yield proc
    stop_all(proc)  # also: no Traceback in the log


async def _client(server: ServerProcess) -> RawRtspClient:
    return await RawRtspClient("127.0.0.1", server.port).connect()


async def test_folded_header_lines_with_cr_or_nul_are_a_400(server: ServerProcess) -> None:
    c = await _client(server)
    for bad in ("b\rc", "b\x00c"):
        await c.send_raw(f"OPTIONS * RTSP/1.0\r\nCSeq: 1\r\nX-Note: a\r\n {bad}\r\n\r\n".encode())
        response = await c.next_response(timeout=30)
        assert response.status == 400 and response.headers["CSeq"] == "1"
    assert (await c.request("OPTIONS", "*")).status == 200  # the connection's worker lives on
    await c.close()


async def test_only_a_numeric_cseq_is_echoed(server: ServerProcess) -> None:
    c = await _client(server)
    for raw in ("1\u2028Injected: yes", "\x01", "\u0661"):
        await c.send_raw(f"OPTIONS * RTSP/1.0\r\nCSeq: {raw}\r\nCSeq: 7\r\n\r\n".encode())
        response = await c.next_response(timeout=30)
        assert response.status == 200 and response.headers.getall("CSeq") == ["7"], response
        assert "Injected" not in response.headers
    await c.close()


async def test_too_many_pipelined_requests_are_answered_then_503(server: ServerProcess) -> None:
    c = await _client(server)
    await c.send_raw(b"".join(f"OPTIONS * RTSP/1.0\r\nCSeq: {i}\r\n\r\n".encode() for i in range(1, 41)))
    statuses = []
    while True:
        try:
            response = await c.next_response(timeout=30)
        except TimeoutError:
            break
        statuses.append((response.status, int(response.headers["CSeq"])))
        if response.status != 200 or len(statuses) == 40:
            break
    answered = [cseq for status, cseq in statuses if status == 200]
    assert len(answered) >= 16 and answered == list(range(1, len(answered) + 1)), statuses
    assert statuses[-1] == (503, len(answered) + 1) or len(answered) == 40, statuses
    await asyncio.wait_for(c.closed.wait(), 10)
    other = await _client(server)
    assert (await other.request("OPTIONS", "*")).status == 200
    await other.close()


async def test_client_text_in_logs_is_escaped(server: ServerProcess) -> None:
    c = await _client(server)
    uri = f"rtsp://127.0.0.1:{server.port}/a\u2028FORGED\u0085b%0AFORGED"
    assert (await c.request("DESCRIBE", uri)).status == 404
    await c.close()
    log = server.log()
    assert "\u2028" not in log and "\u0085" not in log and "a\\u2028FORGED\\x85b" in log
    assert not any(line.startswith("FORGED") for line in log.splitlines())


@pytest.mark.parametrize(
    "media",
    [
        "m=audio 0 RTP/AVP 96\r\na=rtpmap:96 L16/0/0\r\n",  # clock rate 0
        "m=audio 0 RTP/AVP \u00b2\r\n",  # a digit int() refuses
        "m=audio 0 RTP/AVP 96\r\na=rtpmap:96 foo/8000\r\na=fmtp:96 a=\x00b\r\n",  # NUL, relayed
    ],
)
async def test_announce_inputs_that_gave_500_are_a_400(server: ServerProcess, media: str) -> None:
    c = await _client(server)
    body = f"{HEAD}{media}a=control:trackID=0\r\n".encode()
    response = await c.request("ANNOUNCE", c.url("live/odd"), {"Content-Type": "application/sdp"}, body)
    assert response.status == 400, response
    assert (await c.request("DESCRIBE", c.url("live/odd"))).status == 404  # nothing half-published
    await c.close()


@pytest.mark.parametrize("name", ["tone.wav", "stereo.wav"])
def test_mp4_of_pcm_audio_is_transcoded_to_aac(server: ServerProcess, name: str) -> None:
    with urllib.request.urlopen(server.http(f"mp4/{name}"), timeout=60) as response:
        data = response.read()
    with av.open(io.BytesIO(data)) as container:
        audio = container.streams.audio[0]
        seconds = sum(frame.samples for frame in container.decode(audio)) / audio.sample_rate
    assert audio.codec_context.name == "aac" and seconds > 1.9
