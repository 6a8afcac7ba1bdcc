"""What the index page and the JSON API say about each path: probed facts plus live viewer counts.

Probing goes through the catalog (cached by mtime and size), a few files at a time, each with a
time limit, so a large folder or one slow file never stalls the page for long.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import quote

from media.codec_string import video_codec_string
from streamd.rtsp.errors import RtspError

if TYPE_CHECKING:
    from streamd.catalog import Catalog
    from streamd.http.backend import PathsView

PROBE_CONCURRENCY = 4
PROBE_TIMEOUT = 10.0
PAGE_SIZE = 200
MAX_SCAN = 10_000  # paths looked at for a filtered list (the catalog's own bound)
FILTER_CONCURRENCY = 8


@dataclass
class PathEntry:
    name: str
    rtsp_url: str
    sdp_url: str
    watch_url: str
    mp4_url: str
    file_url: str
    viewers: int
    live: bool = False  # an endless (looping) stream rather than a file played once
    codecs: list[str] = field(default_factory=list)
    width: int | None = None
    height: int | None = None
    duration: float | None = None  # seconds; None when live or unknown
    size: int | None = None  # bytes of the file
    error: str | None = None  # why the path cannot be streamed (then the facts above are empty)
    multicast_sdp_url: str = ""  # SDP of the path's multicast group (paths with multicast = true)
    recording: bool = False  # a live path being written to files now (record = true)
    video_codec: str = ""  # RFC 6381 codecs value of the video track, for browsers to check support
    hls_url: str = ""  # the HLS multivariant playlist (streamd/hls): Safari, iOS, TVs, VLC, ffplay

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def public_reason(reason: str, catalog: Catalog) -> str:
    """An error reason without the server's own folder names (visitors see paths, not disks)."""
    if catalog.media_dir is not None:
        reason = reason.replace(f"{catalog.media_dir}/", "")
    return reason


def rtsp_base(host: str, port: int) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"rtsp://{shown}:{port}"


async def list_entries(
    catalog: Catalog,
    server: PathsView,
    rtsp_root: str,
    *,
    offset: int = 0,
    limit: int = PAGE_SIZE,
    visible: Callable[[str], Awaitable[bool]] | None = None,
) -> tuple[list[PathEntry], bool]:
    """Entries ``offset`` to ``offset + limit`` and whether more paths follow.

    With ``visible``, only the paths it allows count (the user's readable paths), out of the
    first ``MAX_SCAN``; each is asked once, a few at a time (an external hook may answer)."""
    if visible is None:
        names = server.live_paths() + catalog.list_paths(offset + limit + 1)
    else:
        names = await _only(visible, server.live_paths() + catalog.list_paths(MAX_SCAN))
    more = len(names) > offset + limit
    names = names[offset : offset + limit]
    slots = asyncio.Semaphore(PROBE_CONCURRENCY)

    async def one(name: str) -> PathEntry:
        async with slots:
            return await describe(catalog, server, rtsp_root, name)

    return list(await asyncio.gather(*(one(n) for n in names))), more


async def _only(visible: Callable[[str], Awaitable[bool]], names: list[str]) -> list[str]:
    slots = asyncio.Semaphore(FILTER_CONCURRENCY)

    async def one(name: str) -> bool:
        async with slots:
            return await visible(name)

    keep = await asyncio.gather(*(one(n) for n in names))
    return [n for n, k in zip(names, keep, strict=True) if k]


async def describe(catalog: Catalog, server: PathsView, rtsp_root: str, name: str) -> PathEntry:
    """One path's entry; a file that cannot be streamed gets ``error`` instead of facts."""
    quoted = quote(name)
    entry = PathEntry(
        name=name,
        rtsp_url=f"{rtsp_root}/{quoted}",
        sdp_url=f"/sdp/{quoted}",
        watch_url=f"/watch/{quoted}",
        mp4_url=f"/mp4/{quoted}",
        file_url=f"/files/{quoted}",
        viewers=server.viewers(name),
        hls_url=f"/hls/{quoted}/index.m3u8",
    )
    try:
        resolved = await asyncio.wait_for(asyncio.shield(server.resolve(name)), PROBE_TIMEOUT)
    except RtspError as exc:
        entry.error = public_reason(exc.reason, catalog)
        return entry
    except TimeoutError:
        entry.error = "still being probed; reload in a moment"
        return entry
    presentation = resolved.presentation
    entry.live = presentation.loop
    if presentation.info.format_name == "live":  # published right now: no file behind it
        entry.file_url = ""
        if server.multicast.advertised(name):
            entry.multicast_sdp_url = f"/sdp/{quoted}?multicast=1"
        entry.recording = server.recordings.is_recording(name)
    # the file's codecs, also those RTP leaves out: the browser fallback and download still have them
    media_tracks = [t for t in presentation.info.tracks if t.kind in ("video", "audio")]
    entry.codecs = [t.codec for t in media_tracks]
    video = next((t for t in media_tracks if t.kind == "video"), None)
    if video is not None:
        entry.width, entry.height = video.width, video.height
        entry.video_codec = video_codec_string(video) or ""
    duration = presentation.duration
    entry.duration = None if duration is None else round(float(duration), 3)
    try:
        entry.size = resolved.file.stat().st_size
    except OSError:
        entry.size = None
    return entry
