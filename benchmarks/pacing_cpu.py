"""Pacing cost in process: N file sessions paced by one event loop into sinks that drop the packets.

No sockets and no load generator, so the figure is the pacing path alone (reading from the shared
cache, packetizing, the loop's Pacer, the pacing core): CPU seconds per stream per second of wall
time and the lateness of each video packet against its media time. Run it with another checkout
on PYTHONPATH to compare two versions in the same session:

    PYTHONPATH=<checkout> python -m benchmarks.pacing_cpu --sessions 400 --seconds 10 [--precise]

``--udp`` sends every packet with ``sendto`` to a loopback socket nobody reads (the kernel drops
what does not fit), so the system call is counted too; ``--srtp`` protects every packet with a
key per session first (``streamd.srtp``), the SRTP cost in the same process-CPU terms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import struct
import sys
import tempfile
import time
from pathlib import Path


class NullSink:
    """Counts what it is given; notes each video packet's lateness against its RTP timestamp."""

    writable = True
    closed = False
    description = "null"

    def __init__(self, clock: int, lateness: list[float] | None) -> None:
        self.clock = clock
        self.lateness = lateness
        self.packets = 0
        self._first: tuple[int, float] | None = None

    def _note(self, packet: bytes) -> None:
        if self.lateness is None:
            return
        ts = struct.unpack_from("!I", packet, 4)[0]
        now = time.monotonic()
        if self._first is None:
            self._first = (ts, now)
            return
        ts0, t0 = self._first
        self.lateness.append(now - (t0 + ((ts - ts0) % 2**32) / self.clock))

    def send_rtp(self, packet: bytes) -> None:
        self.packets += 1
        self._note(packet)

    def send_rtp_many(self, packets: list[bytes]) -> None:
        self.packets += len(packets)
        self._note(packets[0])

    def send_rtcp(self, packet: bytes) -> None:
        return None

    async def drain(self) -> None:
        return None


class UdpSink(NullSink):
    """A NullSink that also sends each packet on a real UDP socket (to a port nobody reads)."""

    def __init__(self, clock: int, lateness: list[float] | None, sock: object, addr: tuple[str, int]) -> None:
        super().__init__(clock, lateness)
        self.sock, self.addr = sock, addr

    def send_rtp(self, packet: bytes) -> None:
        super().send_rtp(packet)
        self.sock.sendto(packet, self.addr)  # type: ignore[attr-defined]

    def send_rtp_many(self, packets: list[bytes]) -> None:
        super().send_rtp_many(packets)
        send, addr = self.sock.sendto, self.addr  # type: ignore[attr-defined]
        for packet in packets:
            send(packet, addr)


async def run(
    sessions: int, seconds: float, precise: bool, media: Path, udp: bool = False, srtp: bool = False
) -> dict[str, object]:
    from media.probe import probe
    from media.unit_cache import UnitCache
    from streamd.playback import Binding, Playback, PlayRequest
    from streamd.rtp.outgoing import OutgoingStream
    from streamd.rtp.presentation import build_presentation

    kwargs: dict[str, object] = {}
    if precise:
        from streamd.rtp.pacing import PacingSettings

        kwargs["settings"] = PacingSettings(precise=True)
    info = probe(media)
    presentation = build_presentation(media.name, info)
    cache = UnitCache()
    lateness: list[float] = []
    playbacks = []
    sinks = []
    import socket

    drop = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    drop.bind(("127.0.0.1", 0))
    drop.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    send_sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    send_sock.setblocking(False)
    for n in range(sessions):
        bindings = {}
        protector = None
        if srtp:
            from streamd.srtp.context import Protector
            from streamd.srtp.suites import MasterKey

            protector = Protector(MasterKey.generate())  # one key per session, as the server does
        for t in presentation.tracks:
            stream = OutgoingStream(t.payload_format, t.track.time_base, cname="bench")
            video = t.track.kind == "video"
            clock = t.payload_format.clock_rate
            if udp:
                sink = UdpSink(clock, lateness if video else None, send_sock, drop.getsockname())
            else:
                sink = NullSink(clock, lateness if video else None)
            sinks.append(sink)
            outer = sink
            if protector is not None:
                from streamd.srtp.sink import protect_sink

                outer = protect_sink(sink, protector)  # type: ignore[arg-type,assignment]
            bindings[t.track.index] = Binding(t, stream, outer)  # type: ignore[arg-type]
        playback = Playback(media, presentation, bindings, label=f"s{n}", unit_cache=cache, **kwargs)  # type: ignore[arg-type]
        await playback.prepare(PlayRequest())
        playback.start()
        playbacks.append(playback)
        if n == 0:
            for _ in range(100):  # the first session fills the shared cache; the others read it
                if cache.get(media, info, frozenset(t.track.index for t in presentation.tracks)):
                    break
                await asyncio.sleep(0.1)
    await asyncio.sleep(1.0)  # settle: every session past its first reads
    lateness.clear()
    packets0 = sum(s.packets for s in sinks)
    cpu0, wall0 = time.process_time(), time.monotonic()
    await asyncio.sleep(seconds)
    cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
    packets = sum(s.packets for s in sinks) - packets0
    for playback in playbacks:
        await playback.stop(send_bye=False)
    send_sock.close()
    drop.close()
    lateness.sort()

    def q(p: float) -> float:
        return round(1000 * lateness[min(len(lateness) - 1, int(p * len(lateness)))], 2) if lateness else 0.0

    return {
        "sessions": sessions,
        "precise": precise,
        "cpu_percent": round(100 * cpu / wall, 1),
        "cpu_percent_per_stream": round(100 * cpu / wall / sessions, 4),
        "packets_per_second": round(packets / wall),
        "cpu_us_per_packet": round(1e6 * cpu / max(packets, 1), 2),
        "udp": udp,
        "srtp": srtp,
        "late_p50_ms": q(0.5),
        "late_p99_ms": q(0.99),
        "late_max_ms": q(1.0),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.pacing_cpu", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--sessions", type=int, default=400)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--precise", action="store_true", help="precise pacing (this checkout must have it)")
    parser.add_argument("--udp", action="store_true", help="send every packet on a real UDP socket")
    parser.add_argument("--srtp", action="store_true", help="protect every packet (a key per session)")
    args = parser.parse_args(argv)
    from media.testsrc import write_synthetic_media

    with tempfile.TemporaryDirectory() as tmp:
        media = Path(tmp) / "clip.mp4"
        write_synthetic_media(
            media, seconds=args.seconds + 30, size=(640, 360), fps=25, gop=25, bframes=False
        )
        result = asyncio.run(run(args.sessions, args.seconds, args.precise, media, args.udp, args.srtp))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
