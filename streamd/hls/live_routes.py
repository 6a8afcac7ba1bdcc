"""HLS for live paths (LL-HLS): the HTTP answers for ``/hls/<live path>/...``.

``index.m3u8`` (multivariant: one variant), ``main/media.m3u8`` (the live media playlist, with
blocking reloads and delta updates), ``main/<stream>-init.mp4``, ``main/<stream>-<msn>.m4s``
(segments) and ``main/<stream>-part<n>.m4s`` (parts, numbered over the stream). ``<stream>``
changes each time the path is published anew, so every object URL names one content forever.

Made for caches in front: objects are immutable (``Cache-Control: public, max-age=31536000,
immutable`` and a strong ``ETag``); the plain playlist lives one second (``max-age=1``), a
blocking request's answer (unique to its ``_HLS_msn``/``_HLS_part`` query, so a cache coalesces
every player waiting for the same part into one origin request) lives longer, since it stays a
right answer to that query. Errors are never cached.
"""

from __future__ import annotations

import asyncio
import re
from typing import TYPE_CHECKING
from urllib.parse import quote

from aiohttp import web

from media import h265
from media.codec_string import hevc_codec_string
from media.track import AacConfig
from streamd.hls.live_directives import Decision, DirectiveError, decide, parse
from streamd.hls.live_playlist import LiveNames, render
from streamd.hls.live_recorded import read_back
from streamd.hls.live_segmenter import Segment
from streamd.hls.live_service import START_TIMEOUT, Entry, LiveHls
from streamd.hls.live_stream import LiveStream
from streamd.rtsp.errors import RtspError

if TYPE_CHECKING:
    from streamd.http.backend import HttpBackend

LIVE_KEY = web.AppKey("hls_live", LiveHls)
PLAYLIST_TYPE = "application/vnd.apple.mpegurl"
READ_BACK_KEPT = 16  # cold segments kept after reading them back (a cache in front keeps more)
MAX_CACHED_PLAYLISTS = 64  # rendered playlists kept per stream until the next part
IMMUTABLE = "public, max-age=31536000, immutable"
RENDITION = "main"
CORS = {"Access-Control-Allow-Origin": "*"}  # web players on other sites (hls.js fetches; no credentials)
_OBJECT = re.compile(r"([0-9a-f]{8})-(?:(init)\.mp4|(0|[1-9][0-9]{0,9})\.m4s|part(0|[1-9][0-9]{0,11})\.m4s)")


async def serve(
    request: web.Request, server: HttpBackend, path: str, rendition: str | None, name: str
) -> web.StreamResponse:
    hls: LiveHls = request.app[LIVE_KEY]
    if rendition is None:
        return await _multivariant(request, hls, await _entry(hls, server, path))
    if rendition != RENDITION:
        raise RtspError(404, f"a live path has one rendition, {RENDITION!r}")
    if name == "media.m3u8":
        hls.requests["playlist"] += 1
        return await _playlist(request, hls, await _entry(hls, server, path))
    match = _OBJECT.fullmatch(name)
    if match is None:
        raise RtspError(404, f"no live HLS object {name!r} (live HLS is fragmented MP4 only)")
    entry = await _entry(hls, server, path)
    stream = entry.stream
    if match.group(1) != stream.names.stream:
        raise RtspError(404, f"{name!r} belongs to an earlier publishing of {path!r}")
    if match.group(2):
        hls.requests["init"] += 1
        if stream.init is None:
            raise RtspError(404, "no init segment yet")
        return _object(request, stream.init, f"{stream.names.stream}-init")
    segmenter = stream.segmenter
    if match.group(3) is not None:
        hls.requests["segment"] += 1
        msn = int(match.group(3))
        segment = segmenter.segment(msn)
        if segment is None or not segment.complete:
            raise RtspError(404, f"segment {msn} is not available (not yet, or no longer)")
        data: bytes | None = segment.data
        if segment.cold:
            data = await _from_recording(entry, segment)
            if data is None:
                raise RtspError(404, f"segment {msn} is no longer in memory nor found in the recording")
        return _object(request, data, f"{stream.names.stream}-{msn}")
    hls.requests["part"] += 1
    number = int(match.group(4))
    if number == segmenter.parts_made and not segmenter.ended:  # the preload hint: wait until it is made
        await hls.wait(entry, lambda: number in segmenter.by_number, _block_limit(entry))
    part = segmenter.by_number.get(number)
    if part is None:
        raise RtspError(404, f"part {number} is not available (not yet, or no longer)")
    return _object(request, part.data, f"{stream.names.stream}-part{number}")


async def _from_recording(entry: Entry, segment: Segment) -> bytes | None:
    """A cold segment, read back from the path's recording in a worker thread (a few kept)."""
    if entry.recordings is None:
        return None
    cached = entry.read_back.get(segment.msn)
    if cached is not None:
        return cached
    pending = entry.reading.get(segment.msn)
    if pending is None:  # one read per segment, however many viewers ask at once
        inputs = entry.stream.inputs
        kinds = ["video" if i.video else "audio" for i in inputs]
        clocks = [i.clock for i in inputs]
        pending = asyncio.ensure_future(
            asyncio.to_thread(read_back, entry.recordings, segment, kinds, clocks)
        )
        entry.reading[segment.msn] = pending
        pending.add_done_callback(lambda _: entry.reading.pop(segment.msn, None))
    data = await asyncio.shield(pending)
    if data is not None:
        entry.read_back[segment.msn] = data
        while len(entry.read_back) > READ_BACK_KEPT:
            entry.read_back.popitem(last=False)
    return data


async def _entry(hls: LiveHls, server: HttpBackend, path: str) -> Entry:
    if path not in hls.entries:
        await server.resolve(path)  # pulls a relayed path; 404 when nothing is published
    return hls.entry(path)


def _block_limit(entry: Entry) -> float:
    return 3.0 * entry.stream.segmenter.target_duration  # 6.2.5.2: then 503


def _unavailable(reason: str) -> web.Response:
    return web.Response(
        status=503,
        text=f"503: {reason}\n",
        headers={"Retry-After": "1", "Cache-Control": "no-store"},
    )


def _object(request: web.Request, data: bytes | memoryview, tag: str) -> web.Response:
    etag = f'"{tag}"'
    headers = {"Cache-Control": IMMUTABLE, "ETag": etag, **CORS}
    if etag in request.headers.get("If-None-Match", ""):
        return web.Response(status=304, headers=headers)
    return web.Response(body=data, content_type="video/mp4", headers=headers)


def _names(request: web.Request, entry: Entry) -> LiveNames:
    token = request.query.get("jwt")
    query = f"?jwt={quote(token, safe='')}" if token else ""
    return LiveNames(entry.stream.names.stream, query)


async def _started(hls: LiveHls, entry: Entry) -> web.Response | None:
    """Wait for the first segment; a 503 (or 404 if the path ended first) when it does not come."""
    segmenter = entry.stream.segmenter
    if not await hls.wait(entry, lambda: segmenter.last_complete >= 0, START_TIMEOUT):
        return _unavailable("the live stream has not begun yet (waiting for a keyframe)")
    if segmenter.last_complete < 0:
        raise RtspError(404, "the path went offline before its first segment")
    return None


async def _playlist(request: web.Request, hls: LiveHls, entry: Entry) -> web.Response:
    try:
        directives = parse(request.query)
    except DirectiveError as exc:
        raise RtspError(400, str(exc)) from None
    refusal = await _started(hls, entry)
    if refusal is not None:
        return refusal
    segmenter = entry.stream.segmenter
    decision = decide(segmenter, directives)
    if decision is Decision.TOO_FAR:
        raise RtspError(400, f"_HLS_msn={directives.msn} _HLS_part={directives.part} is too far ahead")
    if decision is Decision.WAIT and not await hls.wait(
        entry, lambda: decide(segmenter, directives) is Decision.READY, _block_limit(entry)
    ):
        return _unavailable(f"part {directives.msn}.{directives.part} did not come in time")
    names = _names(request, entry)
    key = (entry.version, directives.skip, names.query)
    body = entry.playlists.get(key)
    if body is None:
        body = render(segmenter, names, skip=directives.skip).encode()
        if len(entry.playlists) >= MAX_CACHED_PLAYLISTS:  # many ?jwt= tokens within one part
            entry.playlists.clear()
        entry.playlists[key] = body
    if segmenter.ended:
        cache = f"public, max-age={segmenter.target_duration}"
    elif directives.blocking:
        cache = f"public, max-age={6 * segmenter.target_duration}"
    else:
        cache = "public, max-age=1"
    return web.Response(body=body, headers={"Content-Type": PLAYLIST_TYPE, "Cache-Control": cache, **CORS})


async def _multivariant(request: web.Request, hls: LiveHls, entry: Entry) -> web.Response:
    refusal = await _started(hls, entry)
    if refusal is not None:
        return refusal
    stream = entry.stream
    segments = list(stream.segmenter.segments)
    rates = [len(s.data) * 8 / s.duration for s in segments if s.duration > 0]
    bandwidth = int(max(rates) * 1.1) if rates else 2_000_000
    codecs = ",".join(c for c in (_codec(stream, i) for i in range(len(stream.inputs))) if c)
    token = request.query.get("jwt")
    query = f"?jwt={quote(token, safe='')}" if token else ""
    body = (
        "#EXTM3U\n#EXT-X-VERSION:6\n#EXT-X-INDEPENDENT-SEGMENTS\n"
        f'#EXT-X-STREAM-INF:BANDWIDTH={bandwidth},CODECS="{codecs}"\n'
        f"{RENDITION}/media.m3u8{query}\n"
    )
    return web.Response(
        body=body.encode(),
        headers={"Content-Type": PLAYLIST_TYPE, "Cache-Control": "public, max-age=1", **CORS},
    )


def _codec(stream: LiveStream, slot: int) -> str | None:
    """The RFC 6381 string of a track, from its parameter sets or AudioSpecificConfig."""
    item = stream.inputs[slot]
    if item.codec == "h264":
        sps = item.params.get(7, b"")
        return f"avc1.{sps[1:4].hex().upper()}" if len(sps) >= 4 else "avc1.42E01E"
    if item.codec == "hevc":
        try:
            return hevc_codec_string(item.params.get(h265.NAL_SPS, b""))
        except (ValueError, IndexError):
            return "hvc1.1.6.L93.B0"
    if item.codec == "aac":
        config = stream.live.tracks[item.index].announced.track.config
        return f"mp4a.40.{config.object_type if isinstance(config, AacConfig) else 2}"
    return "opus"
