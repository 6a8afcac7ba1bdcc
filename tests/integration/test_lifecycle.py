"""Server lifecycle: clean shutdown with BYE, session timeouts, idle connections, bad clients."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest

from tests.integration.conftest import SHORT_TIMEOUT_TOML, ServerProcess, start_server
from tests.rtsp_client import RawRtspClient
from tests.waiting import until

pytestmark = pytest.mark.integration

TCP = "RTP/AVP/TCP;unicast;interleaved={}-{}"


@pytest.fixture
def short_timeout_server(media_dir: Path, tmp_path: Path):
    config = tmp_path / "streamd.toml"
    config.write_text(SHORT_TIMEOUT_TOML)  # session_timeout = 2
    proc = start_server(media_dir, tmp_path, "--config", str(config))
    yield proc
    proc.stop()


async def play_tcp(server: ServerProcess, path: str) -> RawRtspClient:
    c = await RawRtspClient("127.0.0.1", server.port).connect()
    assert (await c.request("DESCRIBE", c.url(path))).status == 200
    assert (
        await c.request("SETUP", c.url(f"{path}/trackID=0"), {"Transport": TCP.format(0, 1)})
    ).status == 200
    assert (await c.request("PLAY", c.url(path))).status == 200
    return c


async def test_sigterm_sends_bye_and_exits_cleanly(media_dir: Path, tmp_path: Path) -> None:
    proc = start_server(media_dir, tmp_path)
    c = await play_tcp(proc, "ten.mp4")
    await asyncio.sleep(0.5)
    assert not c.received.got_bye(1)
    code = await asyncio.get_running_loop().run_in_executor(None, proc.stop)
    await asyncio.wait_for(c.closed.wait(), 20)
    assert c.received.got_bye(1), "playing clients get RTCP BYE on shutdown"
    assert code == 0
    log = proc.log()
    assert "Traceback" not in log and "stopped" in log


async def test_silent_udp_session_is_reaped(short_timeout_server: ServerProcess) -> None:
    server = short_timeout_server
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    c = await RawRtspClient("127.0.0.1", server.port).connect()
    await c.request("DESCRIBE", c.url("ten.mp4"))
    r = await c.request(
        "SETUP", c.url("ten.mp4/trackID=0"), {"Transport": f"RTP/AVP;unicast;client_port={port}-{port + 1}"}
    )
    assert r.headers["Session"].endswith(";timeout=2")
    await c.request("PLAY", c.url("ten.mp4"))
    # no keep-alive, no RTCP: gone after 2 s, and the operator is told why (logged just after)
    await until(lambda: c.session not in server.session_ids(), "the silent session to be reaped")
    await until(lambda: "timed out after 2 s" in server.log(), "the reason in the log")
    # the connection, idle as well, is closed too (already, or while we ask); if not, the session
    # is unknown now
    ask = asyncio.ensure_future(c.request("GET_PARAMETER", c.url("ten.mp4")))
    closed = asyncio.ensure_future(c.closed.wait())
    await asyncio.wait({ask, closed}, timeout=15, return_when=asyncio.FIRST_COMPLETED)
    if ask.done() and not ask.exception():
        assert ask.result().status == 454
    else:  # no answer: the server closed the connection
        await asyncio.wait_for(c.closed.wait(), 20)
    for task in (ask, closed):
        task.cancel()
    await c.close()
    sock.close()


async def test_teardown_then_hang_up_still_ends_each_session(short_timeout_server: ServerProcess) -> None:
    """ffmpeg sends TEARDOWN and closes the connection at once: closing cancels the request that
    is winding the session down, which must still finish (routes freed, end-of-session line)."""
    server = short_timeout_server
    for _ in range(5):
        c = await play_tcp(server, "ten.mp4")
        await asyncio.sleep(0.2)
        teardown = f"TEARDOWN {c.url('ten.mp4')} RTSP/1.0\r\nCSeq: 9\r\nSession: {c.session}\r\n\r\n"
        await c.send_raw(teardown.encode())
        await c.close()
    # each ends by its TEARDOWN, with its end-of-session line (the 2 s timeout would say "timed out")
    await until(lambda: server.log().count("ended (TEARDOWN)") == 5, "five end-of-session lines")
    assert not server.session_ids()
    assert "timed out" not in server.log()


async def test_idle_connection_is_closed(short_timeout_server: ServerProcess) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", short_timeout_server.port)
    assert await asyncio.wait_for(reader.read(), 10) == b""  # closed by the server
    writer.close()


async def test_closing_tcp_connection_ends_its_session(server: ServerProcess) -> None:
    c = await play_tcp(server, "ten.mp4")
    session = c.session
    await c.close()
    await until(lambda: session not in server.session_ids(), "the session to end")
    line = f"session {session} ended (connection closed)"  # logged just after it left the registry
    await until(lambda: line in server.log(), "the reason in the log")


async def test_oversized_and_garbage_input_spares_other_clients(server: ServerProcess) -> None:
    good = await play_tcp(server, "ten.mp4")
    bad = await RawRtspClient("127.0.0.1", server.port).connect()
    await bad.send_raw(b"OPTIONS * RTSP/1.0\r\nCSeq: 1\r\nX: " + b"a" * 70000 + b"\r\n\r\n")
    assert (await bad.next_response()).status == 400
    await asyncio.wait_for(bad.closed.wait(), 20)
    flood = await RawRtspClient("127.0.0.1", server.port).connect()
    await flood.send_raw(bytes(range(256)) * 50)
    before = len(good.received.rtp(0))
    await until(lambda: len(good.received.rtp(0)) > before, "the playing client to carry on")
    assert (await good.request("GET_PARAMETER", good.url("ten.mp4"))).status == 200
    await good.request("TEARDOWN", good.url("ten.mp4"))
    for c in (good, bad, flood):
        await c.close()


async def test_small_payload_size_is_honoured_and_exact(media_dir: Path, tmp_path: Path) -> None:
    """--max-payload-size changes packetisation (more FU-A fragments), never the content."""
    from tests.integration.source import received_video_nals, source_video_nals
    from tests.integration.test_ffmpeg import ffmpeg_copy

    proc = start_server(media_dir, tmp_path, "--max-payload-size", "300")
    try:
        c = await play_tcp(proc, "bframes.mp4")
        await until(lambda: len(c.received.rtp(0)) >= 50, "video packets")
        sizes = [len(p.payload) for _, p in c.received.rtp(0)]
        assert sizes and max(sizes) <= 300
        await c.close()
        video, _, _ = await asyncio.get_running_loop().run_in_executor(
            None, ffmpeg_copy, proc.url("bframes.mp4"), "udp", tmp_path, "small"
        )
        assert received_video_nals(video) == source_video_nals(media_dir / "bframes.mp4")
    finally:
        proc.stop()


@pytest.mark.serial  # compares two start-up times
def test_ten_thousand_files_do_not_slow_startup(tmp_path: Path) -> None:
    import time

    media = tmp_path / "many"
    for i in range(100):
        folder = media / f"d{i}"
        folder.mkdir(parents=True)
        for j in range(100):
            (folder / f"f{j}.mp4").write_bytes(b"")
    (tmp_path / "empty").mkdir()
    elapsed = {}
    for folder in (tmp_path / "empty", media):  # the same machine, loaded or not, for both
        started = time.monotonic()
        proc = start_server(folder, tmp_path)
        elapsed[folder.name] = time.monotonic() - started
        proc.stop()
    # nothing is scanned or probed at start-up: the files cost (next to) nothing
    assert elapsed["many"] < 2 * elapsed["empty"] + 2, elapsed


def test_udp_refused_with_461_and_ffmpeg_falls_back_to_tcp(media_dir: Path, tmp_path: Path) -> None:
    """UDP blocked (--no-udp): SETUP over UDP answers 461 and ffmpeg retries over TCP by itself."""
    import json
    import subprocess

    from tests.integration.conftest import need

    need("ffprobe")
    proc = start_server(media_dir, tmp_path, "--no-udp")
    try:
        out = subprocess.run(
            ["ffprobe", "-v", "error", "-show_streams", "-of", "json", proc.url("bframes.mp4")],
            capture_output=True, timeout=60, check=True,
        )  # fmt: skip
        assert len(json.loads(out.stdout)["streams"]) == 2
        log = proc.log()
        assert "461" in log and "over TCP interleaved" in log
    finally:
        proc.stop()
