"""Issue 12.1: playback reads never wait behind other blocking work on the loop's default executor."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from media.probe import probe
from streamd.playback import Binding, Playback, PlayRequest
from streamd.rtp.outgoing import OutgoingStream
from streamd.rtp.presentation import build_presentation
from tests import mediagen


class Sink:
    writable = True
    closed = False

    def __init__(self) -> None:
        self.rtp: list[bytes] = []

    def send_rtp(self, packet: bytes) -> None:
        self.rtp.append(packet)

    def send_rtcp(self, packet: bytes) -> None:
        return None

    async def drain(self) -> None:
        return None


def test_play_starts_while_the_default_executor_is_stuck(tmp_path: Path) -> None:
    media = mediagen.make_h264_aac_mp4(tmp_path / "clip.mp4", seconds=1, bframes=False, size=(160, 120))
    info = probe(media)
    presentation = build_presentation(media.name, info)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        stuck = threading.Event()
        loop.set_default_executor(ThreadPoolExecutor(max_workers=1))
        blocker = loop.run_in_executor(None, stuck.wait)  # e.g. a remux whose client never reads
        try:
            sinks = {t.track.index: Sink() for t in presentation.tracks}
            bindings = {
                t.track.index: Binding(
                    t, OutgoingStream(t.payload_format, t.track.time_base, cname="t"), sinks[t.track.index]
                )
                for t in presentation.tracks
            }
            playback = Playback(media, presentation, bindings, label="t")  # type: ignore[arg-type]
            info = await asyncio.wait_for(playback.prepare(PlayRequest()), 20)
            assert set(info.rtp_info) == set(bindings)
            playback.start()
            for _ in range(200):
                if all(s.rtp for s in sinks.values()):
                    break
                await asyncio.sleep(0.01)
            assert all(s.rtp for s in sinks.values())
            await asyncio.wait_for(playback.stop(), 20)
        finally:
            stuck.set()
            await blocker

    asyncio.run(main())
