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
    with urllib.request.urlopen(server.http("api/v1/sessions"), timeout=10) as response:
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
