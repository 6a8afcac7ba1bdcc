"""A live path as fragmented MP4 over HTTP, for a browser's ``<video>`` (``/mp4/live/...``).

It is a recording whose one endless "file" goes to the HTTP response instead of the disk: the
recorder already turns the path's access units into MP4 samples (parameter sets into avcC/hvcC,
decode timestamps for B-frames, audio lined up with video by the tracks' clocks) and starts on a
keyframe. Each viewer has its own recorder, so a slow browser loses units (its queue is bounded;
video resumes at a keyframe) and never slows the publisher, RTSP readers or other viewers.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections import Counter
from pathlib import Path

from aiohttp import web

from media.errors import MediaError
from media.muxer import FileMuxer, MuxTrack
from streamd.http.fmp4 import Cancelled, ChunkPipe, send_chunks
from streamd.limits import Admission
from streamd.live.hub import LivePath
from streamd.live.recorder import OutputFile, Recorder, RecordSettings
from streamd.rtsp.errors import RtspError

log = logging.getLogger(__name__)

MAX_QUEUED_UNITS = 1024  # per viewer, between the event loop and its muxing thread
MAX_QUEUED_BYTES = 16 * 1024 * 1024


class LiveMp4(Recorder):
    """One viewer's stream of ``live``, written into ``pipe`` until stopped or the viewer leaves."""

    def __init__(self, live: LivePath, pipe: ChunkPipe, viewer: str) -> None:
        settings = RecordSettings(Path(), "mp4", math.inf)  # one output, never cut by time
        super().__init__(live, settings, max_units=MAX_QUEUED_UNITS, max_bytes=MAX_QUEUED_BYTES)
        self.pipe = pipe
        self.viewer = viewer
        self._started = False
        self._error: BaseException | None = None

    def _run(self) -> None:
        try:
            super()._run()
        finally:
            self.pipe.finish(self._error)

    def _new_muxer(self, tracks: list[MuxTrack], wall: float) -> FileMuxer:
        if self._started:  # a second init segment would need a new <video> source
            raise MediaError("the video's parameter sets changed; reload the page to go on")
        self._started = True
        return FileMuxer(self.pipe, "mp4", tracks)  # type: ignore[arg-type]

    def _finished(self, file: OutputFile) -> None:
        pass

    def start(self) -> bool:
        """Start streaming; False when no track of the path can go into MP4 (the caller says so)."""
        return bool(self.inputs) and super().start()

    def _report_start(self) -> None:
        codecs = ", ".join(i.codec for i in self.inputs.values())
        left_out = f"; without {'; '.join(self.left_out)}" if self.left_out else ""
        log.info("%s: %s watches as MP4 (%s%s)", self.live.name, self.viewer, codecs, left_out)

    def _report_behind(self) -> None:
        log.warning("%s: %s reads too slowly: %d units dropped", self.live.name, self.viewer, self.dropped)

    def _report_failure(self, exc: Exception, unfinished: list[FileMuxer]) -> None:
        if isinstance(exc, Cancelled):
            return  # the viewer went away
        self._error = exc
        log.warning("%s: MP4 for %s stopped: %s", self.live.name, self.viewer, exc)

    def _report_end(self) -> None:
        log.info("%s: %s stopped watching (%d units dropped)", self.live.name, self.viewer, self.dropped)


MAX_VIEWERS = 32  # browsers watching live paths at once (a muxing thread each)
OFFLINE_CHECK_SECONDS = 0.5


async def serve_live_mp4(
    request: web.Request, live: LivePath, viewers: Counter[str], per_client: Admission | None = None
) -> web.StreamResponse:
    """Stream ``live`` to this request from its next keyframe until the path goes offline.

    ``viewers`` (the server's count of browsers per path) keeps a relayed path pulled meanwhile;
    ``per_client`` bounds the views of one client address (each costs a muxing thread).
    """
    if viewers.total() >= MAX_VIEWERS:
        raise RtspError(503, f"{MAX_VIEWERS} browsers are watching live paths already; try again later")
    if per_client is None:
        return await _serve(request, live, viewers)
    with per_client.hold(request.remote or ""):
        return await _serve(request, live, viewers)


async def _serve(request: web.Request, live: LivePath, viewers: Counter[str]) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "video/mp4", "Cache-Control": "no-store"})
    response.enable_chunked_encoding()
    if request.method == "HEAD":
        await response.prepare(request)
        return response
    pipe = ChunkPipe(asyncio.get_running_loop())
    view = LiveMp4(live, pipe, f"browser {request.remote}")
    if not view.start():
        raise RtspError(415, f"{live.name!r} has no track MP4 can carry (H.264, H.265, AAC, Opus)")
    viewers[live.name] += 1
    watcher = asyncio.get_running_loop().create_task(_stop_when_offline(live, view))
    try:
        await response.prepare(request)
        await send_chunks(pipe, response)
    except ConnectionError:  # the viewer left: the usual end of watching a live path
        log.debug("/mp4/%s: %s went away", live.name, view.viewer)
    except Exception as exc:  # stalled, or the muxer's error: cut the body short, never a clean end
        log.warning("/mp4/%s: %s", live.name, exc)
        if request.transport is not None:
            request.transport.close()
    finally:
        watcher.cancel()
        viewers[live.name] -= 1
        if viewers[live.name] <= 0:
            del viewers[live.name]
        view.stop()
        pipe.cancel()
    return response


async def _stop_when_offline(live: LivePath, view: LiveMp4) -> None:
    """The publisher left: the view finishes what it has and ends the response."""
    while live.online and view.running:
        await asyncio.sleep(OFFLINE_CHECK_SECONDS)
    view.stop()
