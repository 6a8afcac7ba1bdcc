"""On-demand files as HLS VOD: playlists from the keyframe index, segments remuxed on request.

Video is copied (H.264, HEVC, AV1, VP9; other video is 415); audio is copied when HLS carries it
(AAC, MP3, Opus, AC-3, E-AC-3) and otherwise re-encoded to AAC once per file version, whole
(``media.audio_track``), started by the file's first request: a segment waits until the encode
has passed its end (10 s at most, then 503), so playing from the start begins at once.

The first request for a file probes it and reads its keyframe index (``media.keyframe_index``)
and keeps the cut plan, keyed by the file's path, mtime and size. That, and making segments and
init segments (PyAV, ``media.segment_mux``), runs in the ``hls`` pool, so RTSP's probes and the
``/mp4`` remuxes never queue behind it; one making per object however many ask at once; made
objects are kept in a byte-bounded LRU (``hls_cache_bytes``).

Caching: segments and init segments never change for a given file version, so they are
``immutable`` with a strong ETag made from the file's identity and the object's name; the
playlists list them with ``?v=<identity>``, so a changed file never mixes with cached objects
of the old one (an object asked for with another ``v`` is 404: reload the playlist).
Playlists are short-lived. ``If-None-Match`` is answered 304 before anything is made.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlencode

from aiohttp import web

from media.audio_track import EncodedAudio, StillEncoding, settings, start_encoding
from media.codec_string import video_codec_string
from media.errors import MediaError, UnsupportedMedia
from media.keyframe_index import KeyframeIndex
from media.keyframe_index import build as build_index
from media.probe import probe
from media.segment_mux import SegmentJob, init_segment, make_segment
from media.track import MediaInfo, Track
from media.transcode import transcoded_track
from streamd import executors
from streamd.hls import playlists, urls
from streamd.hls.object_cache import ObjectCache
from streamd.hls.vod_plan import SegmentSpan, cut, shift, target_duration
from streamd.limits import Admission
from streamd.rtsp.errors import RtspError

if TYPE_CHECKING:
    from streamd.catalog import Catalog
    from streamd.config import ServerConfig

log = logging.getLogger(__name__)

COPY_VIDEO = frozenset({"h264", "hevc", "av1", "vp9"})
COPY_AUDIO = frozenset({"aac", "mp3", "opus", "ac3", "eac3"})
TS_CODECS = frozenset({"h264", "hevc", "aac", "mp3", "ac3", "eac3", "opus"})  # FFmpeg's TS muxer
FORMAT_VERSION = "1"  # part of every ETag: bump when the same file would give other bytes
MAX_FILES = 512  # cut plans kept
PLAYLIST_BYTES = 16 * 1024 * 1024  # media playlists kept as written
IMMUTABLE = "public, max-age=31536000, immutable"
PLAYLIST_CACHE = "public, max-age=5"
CORS = {"Access-Control-Allow-Origin": "*"}  # web players on other sites (as the live side)
TYPES = {"m3u8": "application/vnd.apple.mpegurl", "mp4": "video/mp4", "m4s": "video/mp4", "ts": "video/mp2t"}


@dataclass(frozen=True)
class VodFile:
    """One version of a file, cut into segments; ``version`` names that version in URLs."""

    file: Path
    info: MediaInfo
    index: KeyframeIndex
    spans: tuple[SegmentSpan, ...]
    shift: Fraction
    video: Track | None
    audio: tuple[Track, ...]  # the audio tracks served, in the file's order (the first is the default)
    version: str
    encode: frozenset[int] = frozenset()  # audio tracks HLS cannot carry: re-encoded to AAC once

    def codec(self, index: int) -> str:
        """The RFC 6381 codecs value of a served track."""
        return "mp4a.40.2" if index in self.encode else _codec(self.info.track(index))

    def streams(self, rendition: str) -> tuple[int, ...]:
        """Stream indices of ``rendition``; 404 for a rendition this file has not."""
        if rendition == "main":
            audio = () if self.separate_audio else self.audio[:1]
            return tuple(t.index for t in (self.video, *audio) if t is not None)
        index = urls.audio_index(rendition)
        if index is None or index not in {t.index for t in self.audio}:
            raise RtspError(404, f"no audio track {rendition!r} in this file")
        return (index,)

    @property
    def separate_audio(self) -> bool:
        """Several audio tracks: the variant is video only and every track a rendition of its own
        (hls.js cannot switch from audio muxed into the video to a separate rendition)."""
        return self.video is not None and len(self.audio) > 1

    def ts_refusal(self, rendition: str) -> str | None:
        codecs = {"aac" if i in self.encode else self.info.track(i).codec for i in self.streams(rendition)}
        if codecs <= TS_CODECS:
            return None
        return f"{', '.join(sorted(codecs - TS_CODECS))} cannot go in MPEG-TS; use the fMP4 playlist"


def describe(file: Path, target: Fraction) -> VodFile:
    """Probe, choose the tracks, read the keyframe index and cut (blocking: the hls pool)."""
    try:
        info = probe(file)
    except MediaError as exc:  # not a media file at all: 415, like the other routes
        raise UnsupportedMedia(str(exc)) from None
    videos = [t for t in info.tracks if t.kind == "video"]
    video = videos[0] if videos else None
    if video is not None and video.codec not in COPY_VIDEO:
        raise UnsupportedMedia(
            f"{video.codec} video cannot be served as HLS (H.264, HEVC, AV1 and VP9 are; /mp4 converts it)"
        )
    audio = tuple(t for t in info.tracks if t.kind == "audio" and (t.codec in COPY_AUDIO or _encodable(t)))
    if video is None and not audio:
        raise UnsupportedMedia("no audio or video track HLS can carry")
    streams = [t.index for t in (video, *audio) if t is not None]
    index = build_index(file, streams)
    if video is not None and index.reference != video.index:
        raise MediaError("the keyframe index is not the video track's")
    spans = cut(index, target)
    identity = f"{FORMAT_VERSION}\0{file}\0{info.mtime_ns}\0{info.size}\0{target}"
    version = hashlib.sha256(identity.encode()).hexdigest()[:16]
    encode = frozenset(t.index for t in audio if t.codec not in COPY_AUDIO)
    return VodFile(file, info, index, spans, shift(index), video, audio, version, encode)


def _encodable(track: Track) -> bool:
    try:
        transcoded_track(track, "aac")
    except MediaError:
        return False
    return True


class VodService:
    """Answers ``/hls/<file>/...`` requests (``streamd.hls.routes`` calls :meth:`serve`)."""

    def __init__(self, catalog: Catalog, config: ServerConfig) -> None:
        self.catalog = catalog
        self.target = Fraction(config.hls_segment_seconds).limit_denominator(1000)
        self.files: ObjectCache[VodFile] = ObjectCache(MAX_FILES, lambda _file: 1)
        self.objects: ObjectCache[bytes] = ObjectCache(config.hls_cache_bytes, len)
        self.playlists: ObjectCache[str] = ObjectCache(PLAYLIST_BYTES, len)
        # re-encoded audio tracks, weighed by their expected size (they grow while being encoded)
        self.encoded: ObjectCache[EncodedAudio] = ObjectCache(
            config.hls_cache_bytes, lambda a: a.expected_bytes
        )
        # segments being made (or waited for) at once: the pool runs 4, the rest queue up to this
        self.making = Admission(8 * config.max_remuxes, 4 * config.max_remuxes_per_client, "HLS segments")

    async def file(self, path: str) -> VodFile:
        """The cut plan of ``path``'s current version (404/415/422 with the reason). The file is
        probed here, not through the RTSP catalog: HLS carries what RTP cannot and the reverse."""
        file, _loop = self.catalog.locate(path)
        try:
            stat = file.stat()
        except OSError as exc:
            raise RtspError(404, f"cannot stat {path!r}: {exc.strerror}") from None
        key = (str(file), stat.st_mtime_ns, stat.st_size)
        try:
            return await self.files.get_or_make(
                key, lambda: executors.run("hls", describe, file, self.target)
            )
        except UnsupportedMedia as exc:
            raise RtspError(415, str(exc)) from None
        except MediaError as exc:
            raise RtspError(422, f"cannot be cut into HLS segments: {exc}") from None

    async def serve(self, request: web.Request, path: str, rendition: str | None, name: str) -> web.Response:
        target = None if rendition is None else urls.parse(rendition, name)
        if rendition is not None and target is None:
            raise RtspError(404, f"no HLS object {rendition}/{name} for {path!r}")
        vod = await self.file(path)
        for index in vod.encode:  # started by the file's first request
            self._encoded(vod, index)
        carry = {k: v for k, v in request.query.items() if k == "jwt"}  # a token reaches every URL
        if target is None:
            fmt: urls.Format = "ts" if request.query.get("format") == "ts" else "fmp4"
            return _text(request, self.multivariant(vod, fmt, carry))
        if isinstance(target, urls.MediaPlaylist):  # kept: a 2-hour file's lists 1,800 segments
            key = ("playlist", vod.version, target, tuple(carry.items()))
            text = self.playlists.get(key)
            if text is None:
                text = self.media_playlist(vod, target, carry)
                self.playlists.put(key, text)
            return _text(request, text)
        asked = request.query.get("v")
        if asked is not None and asked != vod.version:
            raise RtspError(404, "the file has changed since this playlist was made; reload it")
        streams = vod.streams(target.rendition)
        if isinstance(target, urls.Segment):
            if target.number >= len(vod.spans):
                raise RtspError(404, f"no segment {target.number}: the file has {len(vod.spans)}")
            if target.format == "ts" and (refusal := vod.ts_refusal(target.rendition)):
                raise RtspError(415, refusal)
        etag = f'"{vod.version}-{target.rendition}-{name}"'
        headers = {
            "ETag": etag,
            "Cache-Control": IMMUTABLE,
            "Content-Type": TYPES[name.rsplit(".", 1)[1]],
            **CORS,
        }
        if _matches(request, etag):
            return web.Response(status=304, headers=headers)
        key = (vod.version, target.rendition, name)
        body = self.objects.get(key)
        if body is None:
            with self.making.hold(request.remote or ""):
                body = await self.objects.get_or_make(key, lambda: self._make(vod, streams, target))
        return web.Response(body=body, headers=headers)

    async def _make(self, vod: VodFile, streams: tuple[int, ...], target: urls.Target) -> bytes:
        try:
            if isinstance(target, urls.InitSegment):  # the init needs the encoder's settings only
                encoded = tuple(settings(vod.info, i) for i in streams if i in vod.encode)
            else:
                encoded = tuple(self._encoded(vod, i) for i in streams if i in vod.encode)
            number = target.number if isinstance(target, urls.Segment) else 0
            span = vod.spans[number]
            job = SegmentJob(
                path=str(vod.file),
                streams=streams,
                reference=vod.index.reference,
                by=vod.index.by,
                start=span.start,
                end=span.end,
                shift=vod.shift,
                container="mpegts" if isinstance(target, urls.Segment) and target.format == "ts" else "mp4",
                encoded=encoded,
            )
            make = init_segment if isinstance(target, urls.InitSegment) else make_segment
            return await executors.run("hls", make, job)
        except StillEncoding as exc:
            raise RtspError(503, f"{exc}; try again in a few seconds") from None
        except MediaError as exc:
            log.warning("HLS %s: %s", vod.file.name, exc)
            raise RtspError(422, f"cannot make this segment: {exc}") from None

    def _encoded(self, vod: VodFile, index: int) -> EncodedAudio:
        """Track ``index`` being re-encoded to AAC, whole, once per file version (kept while it fits)."""
        key = (vod.version, index)
        audio = self.encoded.get(key)
        if audio is None:
            audio = start_encoding(vod.file, vod.info, index)
            self.encoded.put(key, audio)
        return audio

    def multivariant(self, vod: VodFile, fmt: urls.Format, carry: dict[str, str]) -> str:
        if fmt == "ts" and (refusal := vod.ts_refusal("main")):
            raise RtspError(415, refusal)
        query = f"?{urlencode(carry)}" if carry else ""
        main = vod.streams("main")
        codecs = [vod.codec(i) for i in main]
        if vod.separate_audio:  # CODECS names every codec the variant's renditions need too
            codecs += sorted({vod.codec(t.index) for t in vod.audio} - set(codecs))
        duration = max(vod.index.end - vod.index.first_dts, Fraction(1))
        bandwidth = int(vod.info.size * 8 / duration * Fraction(3, 2)) + 1
        video = vod.video
        variant = playlists.Variant(
            uri=f"main/{urls.playlist_name(fmt)}{query}",
            codecs=",".join(codecs),
            bandwidth=bandwidth,
            resolution=(video.width, video.height) if video and video.width and video.height else None,
            frame_rate=float(video.frame_rate) if video and video.frame_rate else None,
        )
        audio = [
            playlists.AudioRendition(
                uri=f"a{t.index}/{urls.playlist_name(fmt)}{query}",
                name=t.language or f"audio {n + 1}",
                language=t.language,
                default=n == 0,
                channels=t.channels,
            )
            for n, t in enumerate(vod.audio)
        ]
        version = playlists.FMP4_VERSION if fmt == "fmp4" else playlists.TS_VERSION
        return playlists.multivariant(variant, audio if vod.separate_audio else [], version)

    def media_playlist(self, vod: VodFile, target: urls.MediaPlaylist, carry: dict[str, str]) -> str:
        vod.streams(target.rendition)  # 404 for a rendition the file has not
        if target.format == "ts" and (refusal := vod.ts_refusal(target.rendition)):
            raise RtspError(415, refusal)
        query = "?" + urlencode({"v": vod.version, **carry})
        fmp4 = target.format == "fmp4"
        return playlists.media_playlist(
            [s.duration for s in vod.spans],
            lambda n: urls.segment_name(n, target.format) + query,
            f"init.mp4{query}" if fmp4 else None,
            target_duration(vod.spans),
            playlists.FMP4_VERSION if fmp4 else playlists.TS_VERSION,
        )


def _codec(track: Track) -> str:
    if track.kind == "audio":
        return playlists.audio_codec(track)
    return video_codec_string(track) or track.codec


def _matches(request: web.Request, etag: str) -> bool:
    return etag_matches(request.headers.get("If-None-Match"), etag)


def etag_matches(header: str | None, etag: str) -> bool:
    """Whether an ``If-None-Match`` value names ``etag`` (RFC 9110 13.1.2: weak comparison)."""
    if header is None:
        return False
    return header.strip() == "*" or etag in [t.strip().removeprefix("W/") for t in header.split(",")]


def _text(request: web.Request, body: str) -> web.Response:
    etag = '"' + hashlib.sha256(body.encode()).hexdigest()[:24] + '"'
    headers = {"ETag": etag, "Cache-Control": PLAYLIST_CACHE, **CORS}
    if _matches(request, etag):
        return web.Response(status=304, headers=headers)
    return web.Response(text=body, content_type=TYPES["m3u8"], headers=headers)
