"""The asyncio side of live HLS: one :class:`LiveStream` per live path, shared by all its viewers.

A stream is made on a path's first HLS request and taps the path like a reader; it counts as one
browser viewer of the path (``web_viewers``, which keeps a relayed path pulled) until nobody has
asked for anything of it for ``idle_seconds``, then it lets go. A sweep every ``SWEEP_SECONDS``
finishes streams whose path went offline (their playlist gets ``EXT-X-ENDLIST``, so every blocked
request is answered) and forgets idle ones.

Blocking requests wait on an :class:`asyncio.Event` that is replaced each time parts arrive
(one wake-up for all of them), at most ``max_blocked`` at once (503 beyond), each at most three
target durations (503 then, as 6.2.5.2 says).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from streamd.config import ServerConfig
from streamd.hls.live_segmenter import Part, SegmenterSettings
from streamd.hls.live_stream import LiveStream
from streamd.live.hub import LivePath
from streamd.live.recorder import record_settings
from streamd.rtsp.errors import RtspError

log = logging.getLogger(__name__)

SWEEP_SECONDS = 0.25
START_TIMEOUT = 15.0  # a first playlist request waits this long for the first segment


@dataclass
class Entry:
    stream: LiveStream
    last_used: float
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    version: int = 0  # parts made so far: playlists are cached per version
    recordings: Path | None = None  # where a recorded path's files are (cold segments come from there)
    read_back: OrderedDict[int, bytes] = field(default_factory=OrderedDict)  # cold segments lately read
    reading: dict[int, asyncio.Future[bytes | None]] = field(default_factory=dict)  # ... being read
    playlists: dict[tuple[int, bool, str], bytes] = field(default_factory=dict)

    def on_parts(self, parts: list[Part]) -> None:
        self.version += 1
        self.playlists.clear()
        changed, self.changed = self.changed, asyncio.Event()
        changed.set()


class LiveHls:
    """The live HLS streams of a server."""

    def __init__(
        self,
        live: Mapping[str, LivePath],
        web_viewers: Counter[str],
        settings: SegmenterSettings,
        *,
        idle_seconds: float = 30.0,
        max_blocked: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
        settings_for: Callable[[str], SegmenterSettings] | None = None,
        recordings_for: Callable[[str], Path | None] | None = None,
    ) -> None:
        self.live = live
        self.web_viewers = web_viewers
        self.settings = settings
        self.settings_for = settings_for or (lambda _name: settings)  # per path (its DVR window)
        self.recordings_for = recordings_for or (lambda _name: None)  # a recorded path's folder
        self.idle_seconds = idle_seconds
        self.max_blocked = max_blocked
        self.clock = clock
        self.entries: dict[str, Entry] = {}
        self.blocked = 0
        self.requests: Counter[str] = Counter()  # by kind: what reached the origin
        self._sweeper: asyncio.Task[None] | None = None

    def entry(self, name: str) -> Entry:
        """The stream of live path ``name`` (made now if needed); 404 when it is offline."""
        live = self.live.get(name)
        entry = self.entries.get(name)
        if entry is not None and (live is None or entry.stream.live is live):
            ended_online = entry.stream.segmenter.ended and live is not None and live.online
            if not ended_online:  # a finished stream of an offline path: its playlist has ENDLIST
                entry.last_used = self.clock()
                return entry
            # ended while the path goes on (its video parameter sets changed): a new stream begins
        if live is None or not live.online:
            raise RtspError(404, f"nothing is being published on {name!r} (offline)")
        if entry is not None:
            self._release(name)
        stream = LiveStream(live, self.settings_for(name))
        if not stream.playable:
            raise RtspError(415, f"{name!r} has no track HLS can carry (H.264, H.265, AAC, Opus)")
        entry = Entry(stream, self.clock(), recordings=self.recordings_for(name))
        stream.on_parts = entry.on_parts
        stream.attach()
        self.entries[name] = entry
        self.web_viewers[name] += 1
        for reason in stream.left_out:
            log.warning("%s: HLS without %s", name, reason)
        log.info("%s: HLS stream %s begins (%s)", name, stream.names.stream, ", ".join(stream.codecs))
        self._start_sweeping()
        return entry

    async def wait(self, entry: Entry, ready: Callable[[], bool], timeout: float) -> bool:
        """Wait until ``ready()`` or the stream ends; False when ``timeout`` passed first."""
        if ready():
            return True
        if self.blocked >= self.max_blocked:
            raise RtspError(503, f"{self.max_blocked} blocking HLS requests wait already; try again")
        self.blocked += 1
        deadline = asyncio.get_running_loop().time() + timeout
        try:
            while not ready() and not entry.stream.segmenter.ended:
                left = deadline - asyncio.get_running_loop().time()
                if left <= 0:
                    return False
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(entry.changed.wait(), left)
            return True
        finally:
            self.blocked -= 1

    # --- lifetime ---------------------------------------------------------------------------

    def _start_sweeping(self) -> None:
        if self._sweeper is None or self._sweeper.done():
            self._sweeper = asyncio.get_running_loop().create_task(self._sweep_forever())

    async def _sweep_forever(self) -> None:
        while self.entries:
            await asyncio.sleep(SWEEP_SECONDS)
            self.sweep()

    def sweep(self) -> None:
        """Finish streams whose path went offline; forget those nobody asked for lately."""
        now = self.clock()
        for name, entry in list(self.entries.items()):
            stream = entry.stream
            if not stream.segmenter.ended and (
                not stream.live.online or self.live.get(name) is not stream.live
            ):
                log.info("%s: HLS stream %s ends (the path went offline)", name, stream.names.stream)
                stream.finish()
                entry.on_parts([])  # wake every waiter: the playlist has ENDLIST now
            if now - entry.last_used > self.idle_seconds:
                self._release(name)

    def _release(self, name: str) -> None:
        entry = self.entries.pop(name)
        entry.stream.detach()
        entry.on_parts([])
        self.web_viewers[name] -= 1
        if self.web_viewers[name] <= 0:
            del self.web_viewers[name]
        log.info("%s: HLS stream %s released (no viewer)", name, entry.stream.names.stream)

    async def close(self) -> None:
        for name in list(self.entries):
            self._release(name)
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper


def from_config(live: Mapping[str, LivePath], web_viewers: Counter[str], config: ServerConfig) -> LiveHls:
    settings = SegmenterSettings(
        config.hls_live_segment_seconds, config.hls_part_seconds, config.hls_dvr_seconds, config.hls_dvr_bytes
    )

    def for_path(name: str) -> SegmenterSettings:
        dvr = config.path_settings(name).hls_dvr_seconds  # [paths."..."] hls_dvr_seconds
        chosen = settings if dvr is None else dataclasses.replace(settings, dvr_seconds=float(dvr))
        if record_settings(config, name) is not None:  # older segments come back from the recording
            chosen = dataclasses.replace(chosen, recorded_seconds=config.hls_dvr_recorded_seconds)
        return chosen

    def recordings(name: str) -> Path | None:
        recorded = record_settings(config, name)
        return recorded.folder if recorded is not None else None

    return LiveHls(
        live,
        web_viewers,
        settings,
        idle_seconds=config.hls_idle_seconds,
        max_blocked=config.hls_max_blocked,
        settings_for=for_path,
        recordings_for=recordings,
    )


class RequestCollector(Collector):
    """``streamd_hls_requests_total{kind}``: live HLS requests that reached the server."""

    def __init__(self, hls: LiveHls) -> None:
        self.hls = hls

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(
            "streamd_hls_requests", "Live HLS requests answered by this server", labels=["kind"]
        )
        for kind in ("playlist", "init", "segment", "part"):
            family.add_metric([kind], self.hls.requests[kind])
        yield family
        blocked = GaugeMetricFamily("streamd_hls_blocked_requests", "Blocking HLS requests waiting now")
        blocked.add_metric([], self.hls.blocked)
        yield blocked
