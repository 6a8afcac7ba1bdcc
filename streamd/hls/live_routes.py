"""HLS for live paths (LL-HLS): the HTTP answers for ``/hls/<live path>/...``.

``index.m3u8`` (multivariant: one variant), ``main/media.m3u8`` (the live media playlist, with
blocking reloads and delta updates), ``main/<stream>-init.mp4``, ``main/<stream>-<msn>.m4s``
(segments) and ``main/<stream>-<msn>.<part>.m4s`` (parts). ``<stream>`` changes each time the path
is published anew, so every object URL names one content forever.

Made for caches in front: objects are immutable (``Cache-Control: public, max-age=31536000,
immutable`` and a strong ``ETag``); the plain playlist lives one second (``max-age=1``), a
blocking request's answer (unique to its ``_HLS_msn``/``_HLS_part`` query, so a cache coalesces
every player waiting for the same part into one origin request) lives longer, since it stays a
right answer to that query. Errors are never cached.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING
from urllib.parse import quote

from aiohttp import web

from media import h265
from media.codec_string import hevc_codec_string
from media.track import AacConfig
from streamd.hls.live_directives import Decision, DirectiveError, decide, parse
from streamd.hls.live_playlist import LiveNames, render
from streamd.hls.live_service import START_TIMEOUT, Entry, LiveHls
from streamd.rtsp.errors import RtspError

if TYPE_CHECKING:
    from streamd.http.backend import HttpBackend

LIVE_KEY = web.AppKey("hls_live", LiveHls)
PLAYLIST_TYPE = "application/vnd.apple.mpegurl"
IMMUTABLE = "public, max-age=31536000, immutable"
RENDITION = "main"
CORS = {"Access-Control-Allow-Origin": "*"}  # web players on other sites (hls.js fetches; no credentials)
_OBJECT = re.compile(r"([0-9a-f]{8})-(?:(init)\.mp4|(0|[1-9][0-9]{0,9})(?:\.(0|[1-9][0-9]{0,4}))?\.m4s)")


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
    msn = int(match.group(3))
    if match.group(4) is None:
        hls.requests["segment"] += 1
        segment = stream.segmenter.segment(msn)
        if segment is None or not segment.complete:
            raise RtspError(404, f"segment {msn} is not available (not yet, or no longer)")
        return _object(request, segment.data, f"{stream.names.stream}-{msn}")
    hls.requests["part"] += 1
    index = int(match.group(4))
    segmenter = stream.segmenter
    if segmenter.part(msn, index) is None and (msn, index) == segmenter.next_part:  # preload hint
        await hls.wait(entry, lambda: segmenter.part(msn, index) is not None, _block_limit(entry))
    part = segmenter.part(msn, index)
    if part is None:
        raise RtspError(404, f"part {msn}.{index} is not available (not yet, or no longer)")
    return _object(request, part.data, f"{stream.names.stream}-{msn}.{index}")


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


def _codec(stream: object, slot: int) -> str | None:
    """The RFC 6381 string of a track, from its parameter sets or AudioSpecificConfig."""
    item = stream.inputs[slot]  # type: ignore[attr-defined]
    if item.codec == "h264":
        sps = item.params.get(7, b"")
        return f"avc1.{sps[1:4].hex().upper()}" if len(sps) >= 4 else "avc1.42E01E"
    if item.codec == "hevc":
        try:
            return hevc_codec_string(item.params.get(h265.NAL_SPS, b""))
        except (ValueError, IndexError):
            return "hvc1.1.6.L93.B0"
    if item.codec == "aac":
        track = stream.live.tracks[item.index].announced.track  # type: ignore[attr-defined]
        config = track.config
        return f"mp4a.40.{config.object_type if isinstance(config, AacConfig) else 2}"
    return "opus"
