"""RTSPS listeners in-process (the embedding API, real sockets on loopback): which plain
listener runs for each ``rtsp_listen``, limits applied to RTSPS, the secure flag the policy reads,
and a server without TLS settings opening no TLS port."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

import pytest

from streamd.embed import Server
from tests.tlscerts import CertPair, make_pair
from tests.waiting import until

pytestmark = pytest.mark.integration

CLIENT = ssl.create_default_context()
CLIENT.check_hostname = False
CLIENT.verify_mode = ssl.CERT_NONE


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> CertPair:
    return make_pair(tmp_path_factory.mktemp("listeners"))


def tls_server(pair: CertPair, **settings: object) -> Server:
    return Server(
        rtsp_port=0,
        rtsps_port=0,
        rtp_port=0,
        udp=False,
        tls_cert=str(pair.cert),
        tls_key=str(pair.key),
        **settings,
    )


async def options(port: int, tls: ssl.SSLContext | None) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=tls)
    writer.write(b"OPTIONS rtsp://127.0.0.1/x RTSP/1.0\r\nCSeq: 1\r\n\r\n")
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    writer.close()
    return head


async def test_without_tls_settings_no_tls_port() -> None:
    async with Server(rtsp_port=0, rtp_port=0, udp=False) as server:
        assert server.rtsps_port is None
        assert server.rtsp is not None and server.rtsp.certificates is None
        assert (await options(server.rtsp_port, None)).startswith(b"RTSP/1.0 200")


async def test_rtsp_listen_off_leaves_rtsps_only(pair: CertPair) -> None:
    async with tls_server(pair, rtsp_listen="off") as server:
        assert server.rtsp is not None
        assert [s.sockets[0].getsockname()[1] for s in server.rtsp._servers] == [server.rtsps_port]
        assert server.rtsps_port is not None
        assert (await options(server.rtsps_port, CLIENT)).startswith(b"RTSP/1.0 200")


async def test_rtsp_listen_loopback_binds_plain_rtsp_to_127_0_0_1(pair: CertPair) -> None:
    async with tls_server(pair, host="0.0.0.0", rtsp_listen="loopback") as server:
        assert server.rtsp is not None
        plain = server.rtsp._rtsp_listener
        assert plain is not None and plain.sockets[0].getsockname()[0] == "127.0.0.1"
        rtsps = server.rtsp._rtsps_listener
        assert rtsps is not None and rtsps.sockets[0].getsockname()[0] == "0.0.0.0"


async def test_connections_are_secure_only_over_tls(pair: CertPair) -> None:
    async with tls_server(pair) as server:
        assert server.rtsp is not None and server.rtsps_port is not None
        _reader, writer = await asyncio.open_connection("127.0.0.1", server.rtsps_port, ssl=CLIENT)
        _plain_reader, plain_writer = await asyncio.open_connection("127.0.0.1", server.rtsp_port)
        await until(lambda: len(server.rtsp.connections) == 2, "both connections")  # type: ignore[union-attr]
        assert sorted(c.secure for c in server.rtsp.connections) == [False, True]
        writer.close()
        plain_writer.close()


async def test_per_client_connection_limit_applies_to_rtsps(pair: CertPair) -> None:
    async with tls_server(pair, max_connections_per_client=2) as server:
        assert server.rtsp is not None and server.rtsps_port is not None
        held = [await asyncio.open_connection("127.0.0.1", server.rtsps_port, ssl=CLIENT) for _ in range(2)]
        await until(lambda: len(server.rtsp.connections) == 2, "two connections")  # type: ignore[union-attr]
        reader, writer = await asyncio.open_connection("127.0.0.1", server.rtsps_port, ssl=CLIENT)
        writer.write(b"OPTIONS * RTSP/1.0\r\nCSeq: 1\r\n\r\n")
        assert await asyncio.wait_for(reader.read(), 10) == b""  # the third is closed
        for _, w in held:
            w.close()
        writer.close()


async def test_stalled_handshakes_are_bounded_per_client(pair: CertPair) -> None:
    """Handshakes in progress count against max_connections_per_client too."""
    async with tls_server(pair, max_connections_per_client=3, tls_handshake_timeout=30) as server:
        assert server.rtsp is not None and server.rtsps_port is not None
        stalled = [await asyncio.open_connection("127.0.0.1", server.rtsps_port) for _ in range(3)]
        rtsps = server.rtsp.rtsps
        assert rtsps is not None
        await until(lambda: rtsps.admission.active == 3, "three handshakes waiting")
        reader, writer = await asyncio.open_connection("127.0.0.1", server.rtsps_port)
        assert await asyncio.wait_for(reader.read(), 10) == b""  # refused at once
        assert rtsps.counters["refused"] == 1
        for _, w in stalled:
            w.close()
        writer.close()
        await until(lambda: rtsps.admission.active == 0, "the stalled handshakes released")


def test_bad_certificate_files_fail_start(tmp_path: Path) -> None:
    broken = tmp_path / "broken.pem"
    broken.write_text("no\n")
    pair = make_pair(tmp_path)

    async def start() -> None:
        async with Server(
            rtsp_port=0, rtsps_port=0, rtp_port=0, udp=False, tls_cert=str(broken), tls_key=str(pair.key)
        ):
            pass

    with pytest.raises(OSError, match="cannot load certificate"):
        asyncio.run(start())
