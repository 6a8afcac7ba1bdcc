"""Debian's nginx as a caching proxy in front of streamd, configured with the block documented in
docs/hls-behind-nginx.md: 200 players fetching the same live objects (init segment, segments,
parts, the preload-hinted part and blocking playlist reloads) cause one request each at streamd,
counted by streamd's own ``streamd_hls_requests_total``."""

from __future__ import annotations

import asyncio
import os
import pwd
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import m3u8
import pytest

from tests.integration.conftest import ROOT, ServerProcess, free_tcp_port, need, start_server
from tests.integration.test_hls_live import next_part
from tests.integration.test_live import Publisher
from tests.mediagen import make_live_clip
from tests.waiting import wait_until

pytestmark = pytest.mark.integration

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
CLIENTS = 200


def documented_config() -> str:
    """The nginx block of docs/hls-behind-nginx.md."""
    text = (ROOT / "docs" / "hls-behind-nginx.md").read_text()
    match = re.search(r"```nginx\n(.*?)```", text, re.S)
    assert match, "docs/hls-behind-nginx.md has an nginx block"
    return match.group(1)


@pytest.fixture(scope="module")
def origin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    need("ffmpeg")
    media = tmp_path_factory.mktemp("hls-cache-media")
    make_live_clip(media / "clip.mp4")
    proc = start_server(media, tmp_path_factory.mktemp("hls-cache-server"))
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def cache(origin: ServerProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if not Path(NGINX).exists():
        pytest.skip("nginx is not installed (scripts/test installs nginx-light)")
    tmp = tmp_path_factory.mktemp("nginx")
    port = free_tcp_port()
    block = documented_config()
    block = block.replace("127.0.0.1:8080", f"127.0.0.1:{origin.http_port}")
    block = block.replace("listen 80;", f"listen 127.0.0.1:{port};")
    block = block.replace("/var/cache/nginx/streamd", str(tmp / "cache"))
    temp = " ".join(
        f"{kind}_temp_path {tmp / kind};" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    conf = tmp / "nginx.conf"
    # as root, nginx's workers would run as nobody, who may not write in the test's private folder
    user = f"user {pwd.getpwuid(os.geteuid()).pw_name};\n" if os.geteuid() == 0 else ""
    conf.write_text(
        f"{user}worker_processes 1;\ndaemon off;\npid {tmp / 'nginx.pid'};\n"
        f"error_log {tmp / 'error.log'} warn;\n"
        "events { worker_connections 4096; }\n"
        f"http {{\naccess_log {tmp / 'access.log'};\n{temp}\n{block}\n}}\n"
    )
    process = subprocess.Popen([NGINX, "-p", str(tmp), "-c", str(conf)], stderr=subprocess.PIPE)
    try:
        wait_until(lambda: _listening(port) or process.poll() is not None, "nginx to listen")
        assert process.poll() is None, process.stderr.read().decode() if process.stderr else ""
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(10)


def _listening(port: int) -> bool:
    import socket

    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


async def origin_counts(session: aiohttp.ClientSession, origin: ServerProcess) -> dict[str, int]:
    async with session.get(origin.http("metrics")) as response:
        text = await response.text()
    return {
        k: int(float(v)) for k, v in re.findall(r'streamd_hls_requests_total\{kind="(\w+)"\} (\S+)', text)
    }


async def fetch_all(
    session: aiohttp.ClientSession, url: str, clients: int = CLIENTS
) -> list[tuple[int, bytes]]:
    async def one() -> tuple[int, bytes]:
        async with session.get(url) as response:
            return response.status, await response.read()

    return await asyncio.gather(*(one() for _ in range(clients)))


async def test_two_hundred_players_cause_one_origin_request_per_object(
    cache: str, origin: ServerProcess
) -> None:
    path = "live/cached"
    publisher = await asyncio.to_thread(Publisher, origin, path, loop=True)
    base = f"{cache}/hls/{path}/main/"
    try:
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector) as session:
            async with session.get(base + "media.m3u8") as response:
                assert response.status == 200
                playlist = m3u8.loads(await response.text())
            complete = [s for s in playlist.segments if s.uri]
            assert complete, "a complete segment"
            hint = playlist.preload_hint.uri
            msn, part = next_part(playlist)
            objects = [playlist.segment_map[0].uri, complete[-1].uri]
            objects += [p.uri for p in playlist.segments[-1].parts[:2]]
            before = await origin_counts(session, origin)
            # every player at once: the hinted part (not made yet), the blocking reload for it, the
            # objects already there
            blocking = f"media.m3u8?_HLS_msn={msn}&_HLS_part={part}"
            results = await asyncio.gather(
                fetch_all(session, base + hint),
                fetch_all(session, base + blocking),
                *(fetch_all(session, base + uri) for uri in objects),
            )
            after = await origin_counts(session, origin)
            for answers in results:
                assert {status for status, _ in answers} == {200}
                assert len({body for _, body in answers}) == 1, "every player got the same bytes"
            hinted = m3u8.loads(results[1][0][1].decode())
            assert hint in {p.uri for s in hinted.segments for p in s.parts}
            grew = {
                kind: after.get(kind, 0) - before.get(kind, 0)
                for kind in ("init", "segment", "part", "playlist")
            }
            parts = len(objects) - 2 + 1  # the listed parts and the hinted one
            assert grew == {"init": 1, "segment": 1, "part": parts, "playlist": 1}, grew
    finally:
        await asyncio.to_thread(publisher.stop)
