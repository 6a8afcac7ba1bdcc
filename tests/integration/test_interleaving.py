"""Every track on its own schedule whatever the file's interleaving: a fragmented MP4 whose
fragments hold a second of video, then the same second of audio, and a Matroska file written in
9 s runs per track (longer than the reader's read-ahead), played over RTSP. Each packet's
arrival is compared with its media time (RTP timestamp mapped through RTP-Info) and with the
typical arrival offset; the worst lateness per track must stay small (before the reader merged
tracks by DTS, audio left in one burst per fragment, ~0.8 s late). Played at ``Speed: 2``: the
schedule is the same one at twice the rate, the files' runs are as long in media time (the
9 s runs still exceed the read-ahead), and the 0.8 s of the old bug would still be 0.4 s late.
The reader's order itself is checked without a clock in tests/unit/test_interleave.py."""

from __future__ import annotations

import asyncio
import bisect
import statistics
from collections.abc import Iterator
from pathlib import Path

import av
import pytest

from media.interleave import MAX_SECONDS
from tests.integration.conftest import ServerProcess, start_server, stop_all
from tests.mediagen_runs import make_fragmented_mp4, make_grouped_mkv
from tests.rtsp_client import RawRtspClient
from tests.shared_files import made_once

pytestmark = pytest.mark.integration

MAX_BEHIND = 0.25  # s audio may trail the video of its media time (before: ~0.9 s; quiet machine: ~5 ms)
MAX_LATENESS = 0.4  # seconds late against the typical arrival offset: loose, load may delay a moment
SPEED = 2  # media seconds per second (RFC 2326 Speed): the same schedule in half the time


@pytest.fixture(scope="module")
def run_files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Made once per run: by the parallel pass's check below, for the serial timing test."""
    return made_once(tmp_path_factory, "interleaving-runs-1", _make_run_files)


def _make_run_files(media: Path) -> None:
    make_fragmented_mp4(media / "runs.mp4", seconds=6, run_seconds=1, size=(160, 120), bframes=False)
    # runs of 9 s: longer than the reader's read-ahead bound (8 s of media)
    make_grouped_mkv(media / "grouped.mkv", seconds=10, run_seconds=9, size=(160, 120))


def _longest_run(path: Path) -> float:
    """The most media seconds one track spans in consecutive packets of the file."""
    longest, track, first = 0.0, None, 0.0
    with av.open(str(path)) as container:
        for packet in container.demux():
            if packet.pts is None or packet.time_base is None:
                continue
            at = float(packet.pts * packet.time_base)
            if packet.stream.index != track:
                track, first = packet.stream.index, at
            longest = max(longest, at - first)
    return longest


def test_the_files_come_in_runs_of_one_track(run_files: Path) -> None:
    """What the timing test stands on: the MP4's runs are about a second, the Matroska file's
    longer than the reader's read-ahead bound."""
    assert 0.5 <= _longest_run(run_files / "runs.mp4") < 2
    assert _longest_run(run_files / "grouped.mkv") > float(MAX_SECONDS)


@pytest.fixture(scope="module")
def fragmented(run_files: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    proc = start_server(run_files, tmp_path_factory.mktemp("runs-server"))
    yield proc
    stop_all(proc)


def _rtp_info(header: str) -> dict[str, int]:
    """control URL tail -> rtptime."""
    result = {}
    for item in header.split(","):
        fields = dict(part.strip().split("=", 1) for part in item.split(";") if "=" in part)
        result[fields["url"].rsplit("/", 1)[-1]] = int(fields["rtptime"])
    return result


@pytest.mark.serial  # asserts on each packet's lateness
@pytest.mark.parametrize("name", ["runs.mp4", "grouped.mkv"])
def test_each_track_keeps_its_schedule_in_a_file_of_per_track_runs(
    fragmented: ServerProcess, name: str
) -> None:
    async def scenario() -> tuple[dict[int, list[tuple[float, float]]], str]:
        client = await RawRtspClient("127.0.0.1", fragmented.port).connect()
        try:
            url = client.url(name)
            sdp = (await client.request("DESCRIBE", url, {"Accept": "application/sdp"})).body.decode()
            rates = [int(line.split("/")[1]) for line in sdp.splitlines() if line.startswith("a=rtpmap:")]
            for i in range(2):
                transport = f"RTP/AVP/TCP;unicast;interleaved={2 * i}-{2 * i + 1}"
                setup = await client.request("SETUP", f"{url}/trackID={i}", {"Transport": transport})
                assert setup.status == 200
            play = await client.request("PLAY", url, {"Range": "npt=0-", "Speed": f"{SPEED}"})
            assert play.status == 200 and float(play.headers["Speed"]) == SPEED
            rtptime = _rtp_info(play.headers["RTP-Info"])
            while not (client.received.got_bye(1) and client.received.got_bye(3)):
                await asyncio.sleep(0.05)
            timeline = {}
            for i in range(2):
                base = rtptime[f"trackID={i}"]
                timeline[i] = [
                    (arrival, ((p.timestamp - base) % (1 << 32)) / rates[i] / SPEED)  # wall seconds
                    for arrival, p in client.received.rtp(2 * i)
                ]
            return timeline, sdp
        finally:
            await client.close()

    timeline, _ = asyncio.run(asyncio.wait_for(scenario(), 60))
    # arrival minus media time per packet (no B-frames: video PTS is its send time too); the typical
    # value over both tracks is "on time" (the pacer's start-up and lead are constant offsets)
    offsets = {
        i: [arrival - media for arrival, media in packets if media >= 0.25] for i, packets in timeline.items()
    }
    on_time = statistics.median(offsets[0] + offsets[1])
    worst = {i: max(o) - on_time for i, o in offsets.items()}
    # load delays both tracks alike (one pacer sends them in DTS order); what the file's runs did
    # was to hold audio back behind the video of the same media time: measure that directly
    video = sorted((media, arrival) for arrival, media in timeline[0])
    behind = 0.0
    for arrival, media in timeline[1]:
        shown = (
            bisect.bisect_right(video, (media, float("inf"))) - 1
        )  # the frame on screen then: compare offsets
        if shown >= 0:
            behind = max(behind, (arrival - media) - (video[shown][1] - video[shown][0]))
    print(
        f"worst lateness: video {worst[0] * 1000:.0f} ms, audio {worst[1] * 1000:.0f} ms; "
        f"audio behind its video frame: {behind * 1000:.0f} ms"
    )
    assert len(timeline[0]) > 100 and len(timeline[1]) > 200
    assert behind < MAX_BEHIND, f"audio up to {behind:.3f} s behind the video of its media time"
    assert worst[1] < MAX_LATENESS, f"audio up to {worst[1]:.3f} s late"
    assert worst[0] < MAX_LATENESS, f"video up to {worst[0]:.3f} s late"
    if name == "grouped.mkv":  # the runs exceed the read-ahead: audio came from a demuxer of its own
        assert "grouped.mkv: track 1 comes in runs longer than" in fragmented.log()
