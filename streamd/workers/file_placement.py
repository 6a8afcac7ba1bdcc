"""Which worker converts a file for WebRTC viewers: one for the whole server, per file.

A file whose WebRTC viewers need a conversion (HEVC, or H.264 with B-frames, to baseline H.264;
audio browsers cannot take to Opus) is converted once, in chunks every viewer of it shares
(``streamd/webrtc/chunk_cache.py``). Each worker has its own chunk cache, so the WHEP offers of
such a file all go to one worker, the file's *converter*: the first running worker from a stable
hash of the path over the worker count (:func:`chosen`; the parent answers, since it knows which
workers run now: while the hashed one restarts, the next one in order takes its files). Files
that need no conversion are served where the offer landed, as always.

:func:`converts_for_webrtc` and :func:`chosen` are the rules (plain data); :class:`FileConverters`
asks them for a worker's HTTP side (:class:`.http_owner.Placement`).
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Collection
from typing import Any

from streamd.rtp.presentation import Presentation
from streamd.rtsp.errors import RtspError
from streamd.webrtc.media import PASSED_AUDIO, needs_h264
from streamd.workers.channel import Channel, ChannelError

log = logging.getLogger("streamd")


def converts_for_webrtc(presentation: Presentation) -> bool:
    """Whether a file's WebRTC viewers get a conversion made in shared chunks (what
    ``WebrtcPlayback`` chunks: one track mode, no loop, nothing re-encoded but to Opus)."""
    if presentation.mode != "tracks" or presentation.loop:
        return False
    if any(target != "opus" for _, target in presentation.transcode):
        return False
    tracks = [t.track for t in presentation.tracks]
    video = any(needs_h264(t) for t in tracks)
    audio = any(t.kind == "audio" and t.codec not in PASSED_AUDIO for t in tracks)
    return video or audio or bool(presentation.transcode)


def chosen(path: str, count: int, running: Collection[int]) -> int | None:
    """The worker converting ``path``: its hashed place among ``count`` workers, else the next
    running one after it (None: none runs). The same answer on every worker, in every run."""
    first = zlib.crc32(path.encode("utf-8", "surrogatepass")) % max(1, count)
    return next((i % count for i in range(first, first + count) if i % count in running), None)


class FileConverters:
    """``await converters(path)``: the worker converting the file ``path`` for WebRTC, or None
    (not a file that needs it, or the parent cannot say: the offer is served here)."""

    def __init__(self, paths: Any, channel: Channel) -> None:
        self.paths = paths  # streamd.paths.Paths: config, catalog
        self.channel = channel

    async def __call__(self, path: str) -> int | None:
        if self.paths.config.path_settings(path).source is not None:
            return None  # a configured relay: live
        try:
            resolved = await self.paths.catalog.resolve(path)  # cached: the offer needs it anyway
        except RtspError:
            return None  # answered here (404, 415, ...)
        if not converts_for_webrtc(resolved.presentation):
            return None
        try:
            worker = await self.channel.request("file_worker", path=path)
        except ChannelError as exc:
            log.info("cannot ask the parent which worker converts %s: %s", path, exc)
            return None
        return None if worker is None else int(worker)
