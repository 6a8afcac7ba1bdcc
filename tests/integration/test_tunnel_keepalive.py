"""RTSP over HTTP as the live555 family (VLC, openRTSP) uses it: the session is kept alive only by
RTCP receiver reports sent as interleaved frames on the tunnel's GET connection, and those reports
show up as the session's reception figures."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import ServerProcess, start_server, stop_all
from tests.tunnel_client import TunnelClient

pytestmark = pytest.mark.integration

SESSION_TIMEOUT = 3


@pytest.fixture(scope="module")
def short_timeout(media_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    tmp = tmp_path_factory.mktemp("tunnel")
    config = tmp / "streamd.toml"
    config.write_text(
        f"min_session_timeout = 1\nsession_timeout = {SESSION_TIMEOUT}\nrtcp_min_interval = 1\n"
    )
    proc = start_server(media_dir, tmp, "--config", str(config))
    yield proc
    stop_all(proc)


def _sessions(server: ServerProcess) -> list[dict]:
    with urllib.request.urlopen(server.http("api/v1/sessions"), timeout=30) as response:
        return json.load(response)["sessions"]


def test_rtcp_on_the_get_half_keeps_a_tunnel_session_alive(short_timeout: ServerProcess) -> None:
    async def run() -> tuple[str | None, list[dict], int]:
        client = TunnelClient("127.0.0.1", short_timeout.http_port, "ten.mp4")
        await client.open()
        try:
            await client.play_all()
            # more than two timeouts, plus the reaper's sweep: without the reports it would be gone
            await client.keep_alive_by_rtcp(2 * SESSION_TIMEOUT + 1.5, interval=0.5)
            sessions = await asyncio.to_thread(_sessions, short_timeout)
            return client.session, sessions, client.reports_sent
        finally:
            await client.close()

    started = time.monotonic()
    session_id, sessions, reports_sent = asyncio.run(run())
    ours = [s for s in sessions if s["id"] == session_id]
    lasted = time.monotonic() - started
    assert ours, f"the tunnel session ended after {lasted:.1f} s although its client reported; {sessions}"
    assert lasted > 2 * SESSION_TIMEOUT and reports_sent > 0
    tracks = ours[0]["tracks"]
    assert len(tracks) == 2
    for track in tracks:
        rtcp = track["rtcp"]
        assert rtcp["reports"] > 0, track
        assert rtcp["cumulative_lost"] == 0 and rtcp["fraction_lost"] == 0.0, track
        assert rtcp["jitter_ms"] is not None
    # sender reports reached the client, so its reports carry LSR and the server measures the RTT
    assert any(track["rtcp"]["rtt_ms"] is not None for track in tracks), tracks


def test_live555_duplicate_reports_show_no_loss(short_timeout: ServerProcess) -> None:
    """Cumulative lost -1 with fraction 255 (live555 after a duplicate) is no loss (RFC 3550 6.4.1),
    in the sessions API and in /metrics."""

    async def run() -> tuple[str | None, list[dict], str]:
        client = TunnelClient("127.0.0.1", short_timeout.http_port, "ten.mp4", cookie="h4duplicates")
        await client.open()
        try:
            await client.play_all()
            while not all(t.ssrc for t in client.tracks.values()):
                await asyncio.sleep(0.05)
            client.send_receiver_reports(as_duplicates=True)
            for _ in range(100):
                sessions = await asyncio.to_thread(_sessions, short_timeout)
                ours = [s for s in sessions if s["id"] == client.session]
                if ours and all(t["rtcp"]["reports"] for t in ours[0]["tracks"]):
                    break
                await asyncio.sleep(0.1)
            metrics = await asyncio.to_thread(_text, short_timeout, "metrics")
            return client.session, sessions, metrics
        finally:
            await client.close()

    session_id, sessions, metrics = asyncio.run(run())
    (ours,) = [s for s in sessions if s["id"] == session_id]
    for track in ours["tracks"]:
        assert track["rtcp"]["reports"] >= 1, track
        assert (track["rtcp"]["cumulative_lost"], track["rtcp"]["fraction_lost"]) == (-1, 0.0), track
    fractions = [line for line in metrics.splitlines() if line.startswith("streamd_rtcp_fraction_lost{")]
    assert fractions and all(float(line.rsplit(" ", 1)[1]) == 0.0 for line in fractions), fractions
    lost = [line for line in metrics.splitlines() if line.startswith("streamd_rtcp_packets_lost{")]
    assert any(float(line.rsplit(" ", 1)[1]) == -1.0 for line in lost), lost


def _text(server: ServerProcess, path: str) -> str:
    with urllib.request.urlopen(server.http(path), timeout=30) as response:
        return response.read().decode()
