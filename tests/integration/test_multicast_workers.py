"""Multicast with ``streamd serve --workers 2``, inside a network namespace of our own.

Readers pinned to each worker (:mod:`tests.integration.workers_pin`) of one path are told the
same group, ports and SSRC, and what reaches the group comes from one send (one SSRC, every
sequence number once); two ffmpeg players, one per worker, get exactly what was published; two
paths whose hashed first choice is the same group, read on different workers, get two groups.
"""

from __future__ import annotations

import itertools
import os
import re
import signal
import socket
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from aiortc.rtp import RtpPacket

from streamd.live.multicast_groups import GroupPool, MulticastRange
from streamd.rtsp.headers import TransportSpec, parse_transport
from tests.integration import test_multicast as mc
from tests.integration.conftest import ServerProcess, stop_all
from tests.integration.netns import NetNamespace
from tests.integration.test_live import Publisher
from tests.integration.workers_pin import Steering, exchange, pinned
from tests.waiting import wait_until

pytestmark = pytest.mark.integration

netns, clip_dir, _inside = mc.netns, mc.clip_dir, mc._inside  # the namespace and media fixtures
RANGE = mc.RANGE

PORTS = (41400, 41499)
MULTICAST = "Transport: RTP/AVP;multicast\n"


@pytest.fixture(scope="module")
def two_workers(
    netns: NetNamespace, clip_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    tmp = tmp_path_factory.mktemp("mcw-server")
    proc = mc._serve(netns, clip_dir, tmp, "--multicast-ports", f"{PORTS[0]}-{PORTS[1]}", "--workers", "2")
    yield proc
    stop_all(proc)


class Reader:
    """A raw RTSP multicast reader on a connection pinned to one worker."""

    def __init__(self, server: ServerProcess, worker: int, path: str) -> None:
        self.sock = pinned(server.port, server.rtp_port, worker, probe="clip.mp4")
        self.url = server.url(path)
        self.cseq = itertools.count(10)
        self.session = ""

    def request(self, method: str, url: str, extra: str = "") -> tuple[int, dict[str, str], bytes]:
        session = f"Session: {self.session}\n" if self.session else ""
        return exchange(self.sock, f"{method} {url} RTSP/1.0\nCSeq: {next(self.cseq)}\n{session}{extra}")

    def setup(self) -> list[TransportSpec]:
        status, _, sdp = self.request("DESCRIBE", self.url)
        assert status == 200
        replies = []
        for control in re.findall(rb"a=control:(trackID=\d+)", sdp):
            status, headers, _ = self.request("SETUP", f"{self.url}/{control.decode()}", MULTICAST)
            assert status == 200, (status, headers)
            self.session = headers["session"].split(";")[0]
            replies.append(parse_transport(headers["transport"])[0])
        return replies

    def play(self) -> None:
        assert self.request("PLAY", self.url)[0] == 200

    def teardown(self) -> None:
        assert self.request("TEARDOWN", self.url)[0] == 200

    def close(self) -> None:
        self.sock.close()


def _sends(server: ServerProcess, path: str) -> list[str]:
    return [
        line
        for line in server.log().splitlines()
        if f"multicast {path} -> " in line and ": sending (" in line
    ]


def test_readers_on_two_workers_share_one_group_and_one_send(two_workers: ServerProcess) -> None:
    server = two_workers
    publisher = Publisher(server, "live/w", loop=True)
    readers = [Reader(server, worker, "live/w") for worker in (0, 1)]
    rtp = rtcp = None
    try:
        first, second = (reader.setup() for reader in readers)
        assert len(first) == 2
        for a, b in zip(first, second, strict=True):
            assert a.cast == "multicast" and a.destination.startswith("239.255.42.")
            assert (a.destination, a.port, a.ssrc) == (b.destination, b.port, b.ssrc), "one group, one SSRC"
        group, (video_port, _), video_ssrc = first[0].destination, first[0].port, first[0].ssrc
        rtp, rtcp = mc._group_socket(group, video_port), mc._group_socket(group, video_port + 1)
        for reader in readers:
            reader.play()
        datagrams: list[bytes] = []
        wait_until(lambda: len(mc._drain_into(rtp, datagrams)) > 60, "60 packets at the group")
        packets = [RtpPacket.parse(d) for d in datagrams]
        assert {p.ssrc for p in packets} == {video_ssrc}, "one sender"
        seqs = [p.sequence_number for p in packets]
        assert all((b - a) % 65536 == 1 for a, b in itertools.pairwise(seqs)), "each packet once"
        assert len(_sends(server, "live/w")) == 1, "one send for the whole server"
        assert "sent by another worker" in server.log(), "the other worker mirrors it"
        # whichever worker sends, a reader of either leaving leaves the send to the other
        readers[0].teardown()
        mc._drain(rtp)
        after: list[bytes] = []
        wait_until(lambda: len(mc._drain_into(rtp, after)) > 10, "the send to go on for the other reader")
        assert not mc._has_bye(mc._drain(rtcp))
        readers[1].teardown()
        reports: list[bytes] = []
        wait_until(lambda: mc._has_bye(mc._drain_into(rtcp, reports)), "BYE at the group when nobody plays")
    finally:
        for sock in (rtp, rtcp):
            if sock is not None:
                sock.close()
        for reader in readers:
            reader.close()
        publisher.stop()


def test_ffmpeg_on_each_worker_gets_it_exactly(two_workers: ServerProcess, tmp_path: Path) -> None:
    server = two_workers
    publisher = Publisher(server, "live/wf")
    try:
        outputs = [(tmp_path / f"v{i}.h264", tmp_path / f"a{i}.aac") for i in (0, 1)]
        with (
            Steering([pinned(server.port, server.rtp_port, w, probe="clip.mp4") for w in (0, 1)]) as steering,
            ThreadPoolExecutor(2) as pool,
        ):
            args = ["-rtsp_transport", "udp_multicast", "-i", steering.url("live/wf")]
            list(pool.map(lambda files: mc._play_to_files(args, *files), outputs))
    finally:
        publisher.stop()
    for video, audio in outputs:
        mc._assert_exact(server, video, audio)
    assert len(_sends(server, "live/wf")) == 1, "both players, on two workers, were served by one send"


def _colliding(path: str) -> str:
    """Another path whose first choice (hashed) is ``path``'s group."""
    spec = MulticastRange.parse(RANGE, PORTS, 1)
    group = GroupPool(spec).allocate(path, [0, 1]).group
    return next(
        f"live/q{i}" for i in range(10_000) if GroupPool(spec).allocate(f"live/q{i}", [0, 1]).group == group
    )


def test_two_paths_on_two_workers_never_share_a_group(two_workers: ServerProcess) -> None:
    """Each worker alone would give both paths the same group (their hashed first choice)."""
    server = two_workers
    paths = ["live/p", _colliding("live/p")]
    publishers = [Publisher(server, path, loop=True) for path in paths]
    readers = [Reader(server, worker, path) for worker, path in enumerate(paths)]
    sockets: list[socket.socket] = []
    try:
        replies = [reader.setup() for reader in readers]
        groups = {r[0].destination for r in replies}
        assert len(groups) == 2, replies
        ports = [p for r in replies for t in r for p in t.port]
        assert len(ports) == len(set(ports)), "no port shared either"
        for reader in readers:
            reader.play()
        for reply in replies:
            video = reply[0]
            sock = mc._group_socket(video.destination, video.port[0])
            sockets.append(sock)
            datagrams: list[bytes] = []
            wait_until(lambda s=sock, d=datagrams: len(mc._drain_into(s, d)) > 20, "packets at each group")
            assert {RtpPacket.parse(d).ssrc for d in datagrams} == {video.ssrc}, "no other path's packets"
    finally:
        for sock in sockets:
            sock.close()
        for reader in readers:
            reader.close()
        for publisher in publishers:
            publisher.stop()


def test_a_killed_sending_worker_s_readers_elsewhere_get_bye(two_workers: ServerProcess) -> None:
    """The worker that sends is killed (SIGKILL: it says nothing): the other worker, whose reader
    mirrors its send, says BYE in its name, so players end as when a send stops. (Last in this
    module: the parent starts the killed worker again.)"""
    server = two_workers
    publisher = Publisher(server, "live/k", loop=True)
    readers = [Reader(server, worker, "live/k") for worker in (0, 1)]
    rtp = rtcp = None
    try:
        first = readers[0].setup()
        readers[1].setup()
        group, (video_port, _) = first[0].destination, first[0].port
        rtp, rtcp = mc._group_socket(group, video_port), mc._group_socket(group, video_port + 1)
        for reader in readers:
            reader.play()
        datagrams: list[bytes] = []
        wait_until(lambda: len(mc._drain_into(rtp, datagrams)) > 10, "packets at the group")
        (line,) = _sends(server, "live/k")
        sender = int(re.search(r"\[worker (\d)\]", line).group(1))  # type: ignore[union-attr]
        pids = re.findall(rf"worker {sender} \(pid (\d+)\) ready", server.log())
        mc._drain(rtcp)
        os.kill(int(pids[-1]), signal.SIGKILL)
        reports: list[bytes] = []
        wait_until(lambda: mc._has_bye(mc._drain_into(rtcp, reports)), "BYE from the mirror")
        assert "the worker sending it is gone" in server.log()
    finally:
        for sock in (rtp, rtcp):
            if sock is not None:
                sock.close()
        for reader in readers:
            reader.close()
        publisher.stop()
    wait_until(lambda: server.log().count(f"worker {sender} (pid") == 2, "the killed worker started again")
