"""``streamd serve --workers 2``: a file's WebRTC conversion is made once for the whole server
(issue 16 with issue 18's workers).

Two aiortc viewers of the same H.264-with-B-frames + AAC file, their offers pinned to different
workers (:mod:`tests.integration.workers_pin`), are both served by the one worker that converts
the file: both decode every picture as baseline H.264, each chunk is converted once in the
metric summed over the workers (whichever worker answers the scrape), and the viewer whose
offer is forwarded ends its session with a DELETE through the worker it reached. A file that needs no
conversion is answered where its offer landed.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator

import pytest

from streamd.workers.file_placement import chosen
from tests.integration.conftest import ServerProcess, need, start_server
from tests.integration.test_whep_file_chunks import _assert_baseline, _chunks, _decoded_pictures
from tests.integration.whep_client import WhepClient, h264_units
from tests.integration.workers_pin import exchange, pinned, steer
from tests.mediagen import make_h264_aac_mp4, make_with_ffmpeg
from tests.waiting import until, wait_until

pytestmark = pytest.mark.integration

FILE, FRAMES = "bframes.mp4", 50  # 2 s at 25 fps; also what pinning probes with (RTSP only)
PLAIN = "plain.mp4"  # H.264 without B-frames, no audio: browsers take it as it is
CONVERTED = "streamd_webrtc_file_chunks_converted_total"


@pytest.fixture(scope="module")
def workers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    need("ffmpeg")
    media = tmp_path_factory.mktemp("workers-whep-media")
    make_h264_aac_mp4(media / FILE, seconds=2, bframes=True, size=(160, 120), gop=25)  # two chunks
    make_with_ffmpeg(media / PLAIN, "-c:v", "libx264", "-bf", "0", "-pix_fmt", "yuv420p")
    proc = start_server(media, tmp_path_factory.mktemp("workers-whep-server"), "--workers", "2")
    wait_until(lambda: "all 2 workers ready" in proc.log(), "both workers ready", timeout=120)
    yield proc
    assert proc.stop() == 0
    assert "Traceback" not in proc.log(), proc.log()


def metrics_on(server: ServerProcess, worker: int) -> dict[str, float]:
    with pinned(server.port, server.rtp_port, worker) as sock:
        status, _, body = exchange(sock, "GET /metrics HTTP/1.1\nHost: 127.0.0.1\nConnection: close\n")
    assert status == 200
    return {
        k: float(v) for k, v in re.findall(r"^(streamd_webrtc_file_chunk\w*) (\S+)$", body.decode(), re.M)
    }


def answered_by(server: ServerProcess, path: str) -> list[int]:
    """The workers that answered offers for ``path``, in order."""
    found = re.findall(
        rf"\[worker (\d)\] WHEP \S+ \(127\.0\.0\.1\): offer for {re.escape(path)} answered", server.log()
    )
    return [int(i) for i in found]


def test_two_viewers_on_different_workers_share_one_conversion(workers: ServerProcess) -> None:
    converter = chosen(FILE, 2, [0, 1])
    chunks = _chunks(workers.media / FILE)
    assert chunks >= 2  # a chunk border is crossed
    before = metrics_on(workers, 0)
    ended = workers.log().count(f"{FILE} ended: the file ended")
    with steer(workers.port, workers.rtp_port, 0) as on0, steer(workers.port, workers.rtp_port, 1) as on1:

        async def view() -> list[WhepClient]:
            clients = [WhepClient(f"http://127.0.0.1:{s.port}/whep/{FILE}") for s in (on0, on1)]
            await asyncio.gather(*(c.start() for c in clients))
            for client in clients:
                assert client.status == 201 and "H264/90000" in client.answer, client.answer
            await until(
                lambda: workers.log().count(f"{FILE} ended: the file ended") >= ended + 2, "the end", 60
            )
            await asyncio.sleep(0.3)  # the last packets on their way
            for client in clients:
                await client.close()
            return clients

        clients = asyncio.run(view())
    for client in clients:
        units = h264_units(client.packets["video"])
        _assert_baseline(units)
        assert len(units) == FRAMES and _decoded_pictures(units) == FRAMES
        assert client.packets["audio"]  # AAC as Opus
    assert answered_by(workers, FILE) == [converter, converter]  # the offer pinned elsewhere went there
    for worker in (0, 1):  # the sum over the workers, whichever answers the scrape
        after = metrics_on(workers, worker)
        assert after[CONVERTED] - before.get(CONVERTED, 0) == chunks, (worker, after, before)


def test_a_viewer_deletes_its_session_through_the_worker_its_offer_landed_on(workers: ServerProcess) -> None:
    other = 1 - chosen(FILE, 2, [0, 1])
    with steer(workers.port, workers.rtp_port, other, other) as via:

        async def view() -> int:
            client = WhepClient(f"http://127.0.0.1:{via.port}/whep/{FILE}")
            await client.start()
            assert client.status == 201, client.answer
            await until(lambda: len(client.packets["video"]) >= 10, "packets", 30)
            deleted = await client.delete()
            await client.close()
            return deleted

        assert asyncio.run(view()) == 200
    assert re.search(
        rf"\[worker {1 - other}\] WHEP \S+ \(127\.0\.0\.1\): {FILE} ended: the viewer ended it", workers.log()
    )


def test_a_file_that_needs_no_conversion_is_answered_where_its_offer_landed(workers: ServerProcess) -> None:
    for worker in (0, 1):
        with steer(workers.port, workers.rtp_port, worker) as via:

            async def view() -> None:
                client = WhepClient(f"http://127.0.0.1:{via.port}/whep/{PLAIN}")
                await client.start(("video",))
                assert client.status == 201, client.answer
                await client.close()

            asyncio.run(view())
    assert answered_by(workers, PLAIN) == [0, 1]
