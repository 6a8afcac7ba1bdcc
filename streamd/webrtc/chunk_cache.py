"""Converted chunks of files, shared by every WebRTC viewer of the process.

One ``ObjectCache`` (the HLS one: LRU, bounded in bytes, one making per key however many ask)
holds the finished chunks, keyed by the file (path, mtime, size), the viewer's tracks and their
targets, and the chunk number; another the files' chunk plans. A chunk being converted is handed
to every viewer that asks for it and grows as the conversion goes. Conversions run on a small
thread pool of their own, so the event loop never blocks and they never hold up playback reads.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable, Hashable, Iterator
from concurrent.futures import ThreadPoolExecutor
from fractions import Fraction
from pathlib import Path
from typing import Protocol

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from media import keyframe_index
from media.access_unit import AccessUnit
from media.track import MediaInfo
from streamd.hls.object_cache import ObjectCache
from streamd.webrtc.chunk_convert import ChunkJob, Emit, convert
from streamd.webrtc.file_chunks import Chunk, ChunkPlan, plan

log = logging.getLogger(__name__)

DEFAULT_BYTES = 256 * 1024 * 1024
PLANS = 256  # files whose chunk plan is kept
WORKERS = max(1, min(4, os.cpu_count() or 1))  # conversions at once

Converter = Callable[[ChunkJob, ChunkPlan, int, Emit], bool]  # blocking: runs in the pool; final?


class FileChunks:
    def __init__(
        self, budget: int = DEFAULT_BYTES, workers: int = WORKERS, converter: Converter = convert
    ) -> None:
        self.convert = converter
        self.chunks: ObjectCache[Chunk] = ObjectCache(budget, lambda chunk: chunk.nbytes)
        self.plans: ObjectCache[ChunkPlan] = ObjectCache(PLANS, lambda _plan: 1)
        self.executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="webrtc-convert")
        self.requests = 0  # chunks asked for by viewers (cached, being made, or made for them)
        self.hits = 0  # ... found converted already
        self._growing: dict[Hashable, Chunk] = {}  # being converted, by key
        self.closed = False

    @property
    def converted(self) -> int:
        return self.chunks.made

    def counts(self) -> dict[str, int]:
        """What ``ChunkCollector`` reports (with worker processes, summed over the workers)."""
        return {
            "converted": self.converted,
            "requests": self.requests,
            "hits": self.hits,
            "bytes": self.chunks.size,
        }

    async def plan(self, path: Path, source: MediaInfo, indices: tuple[int, ...]) -> ChunkPlan:
        key = (str(path), source.mtime_ns, source.size, indices)
        loop = asyncio.get_running_loop()

        async def make() -> ChunkPlan:
            index = await loop.run_in_executor(self.executor, keyframe_index.build, path, list(indices))
            return plan(index)

        return await self.plans.get_or_make(key, make)

    def chunk(self, job: ChunkJob, chunks: ChunkPlan, n: int) -> Chunk:
        """Chunk ``n`` of ``job``: cached, or being converted (it grows: read what is there), or
        converted from now on, once however many viewers ask. On the event loop."""
        self.requests += 1
        key = (job.identity, n)
        done = self.chunks.get(key)
        if done is not None:
            self.hits += 1
            return done
        growing = self._growing.get(key)
        if growing is not None:
            return growing
        growing = self._growing[key] = Chunk(n)
        loop = asyncio.get_running_loop()

        def emit(units: list[AccessUnit], starts: list[Fraction]) -> None:
            if self.closed:
                raise Stopped("the server stops")  # ends the conversion at its next picture
            loop.call_soon_threadsafe(growing.add, units, starts)

        async def make() -> Chunk:
            began = time.monotonic()
            try:
                final = await loop.run_in_executor(self.executor, self.convert, job, chunks, n, emit)
            except BaseException as exc:
                # stopping: the server's (Stopped) or the loop's (cancelled), neither is a failure
                stopped = isinstance(exc, Stopped | asyncio.CancelledError)
                level, what = (logging.INFO, "stopped") if stopped else (logging.WARNING, "failed")
                reason = str(exc) or type(exc).__name__
                log.log(level, "%s: converting chunk %d for WebRTC %s: %s", job.path, n, what, reason)
                growing.fail(exc)
                raise
            finally:
                self._growing.pop(key, None)
            growing.finish(final)
            log.debug("%s: chunk %d converted for WebRTC in %.2f s (%d bytes)",
                      job.path, n, time.monotonic() - began, growing.nbytes)  # fmt: skip
            return growing

        making = asyncio.ensure_future(self.chunks.get_or_make(key, make))
        making.add_done_callback(_retrieved)
        return growing

    async def grown(self, chunk: Chunk, have: int) -> None:
        """Until ``chunk`` holds more than ``have`` units, or is complete."""
        while len(chunk.units) <= have and not chunk.complete:
            changed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            chunk.watchers.append(lambda f=changed: f.done() or f.set_result(None))  # type: ignore[misc]
            await changed

    async def ahead(
        self, chunk: Chunk, since: Fraction | None, lead: Fraction, time_bases: dict[int, Fraction]
    ) -> None:
        """Until ``chunk`` holds ``lead`` seconds from ``since`` (None: its first unit), or is
        complete: a viewer starts with some media in hand, not at the edge of the conversion."""

        def held() -> Fraction:
            first, last = chunk.units[0], chunk.units[-1]
            start = since if since is not None else first.dts * time_bases[first.stream_index]
            return last.dts * time_bases[last.stream_index] - start

        while not chunk.complete and (not chunk.units or held() < lead):
            await self.grown(chunk, len(chunk.units))

    async def reached(self, chunk: Chunk, seconds: Fraction) -> None:
        """Until ``chunk`` has a keyframe after ``seconds`` (a seek's target), or is complete."""
        while not chunk.complete and not (chunk.starts and chunk.starts[-1] > seconds):
            await self.grown(chunk, len(chunk.units))

    def close(self) -> None:
        self.closed = True
        self.executor.shutdown(wait=False, cancel_futures=True)


class Stopped(Exception):
    """A conversion given up (the server stops)."""


class ChunkCounts(Protocol):
    def counts(self) -> dict[str, int]: ...


class ChunkCollector(Collector):
    """``streamd_webrtc_file_chunks_converted_total`` and the cache's requests and bytes, from a
    ``FileChunks`` or anything with its ``counts()`` (the whole server's, with worker processes)."""

    def __init__(self, chunks: ChunkCounts) -> None:
        self.file_chunks = chunks

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        counts = self.file_chunks.counts()
        converted = CounterMetricFamily(
            "streamd_webrtc_file_chunks_converted", "File chunks converted for WebRTC viewers"
        )
        converted.add_metric([], counts["converted"])
        yield converted
        requests = CounterMetricFamily(
            "streamd_webrtc_file_chunk_requests",
            "File chunks WebRTC viewers asked for (cached, being converted, or converted for them)",
        )
        requests.add_metric([], counts["requests"])
        yield requests
        hits = CounterMetricFamily(
            "streamd_webrtc_file_chunk_cache_hits", "File chunks WebRTC viewers found converted already"
        )
        hits.add_metric([], counts["hits"])
        yield hits
        size = GaugeMetricFamily("streamd_webrtc_file_chunk_cache_bytes", "Converted file chunks held")
        size.add_metric([], counts["bytes"])
        yield size


def _retrieved(future: asyncio.Future[Chunk]) -> None:
    if not future.cancelled():
        future.exception()  # a failure reaches viewers through the chunk (``Chunk.error``)
