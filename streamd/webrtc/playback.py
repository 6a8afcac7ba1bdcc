"""A WebRTC viewer's playback of a file: ``Playback`` with what the browser cannot decode (HEVC,
H.264 with B-frames, AAC/MP3/AC-3/... audio) converted.

With the process's shared ``FileChunks`` the conversion is made once per file, in chunks, for all
its viewers (``file_chunks``): the viewer reads converted chunks on the loop, fetches the one it
lacks (a conversion in the chunk pool, shared with every viewer waiting for it) and asks for the
next one ahead. Without it (and for looped files) the viewer converts its own reading, in the
playback's reading threads.
"""

from __future__ import annotations

import asyncio
import logging
from fractions import Fraction

from media.access_unit import AccessUnit
from media.errors import MediaError
from media.reader import MediaReader
from media.transcode import TranscodingReader
from media.video_transcode import VideoToH264
from streamd.playback import MAX_QUEUED_UNITS, Playback, PlayRequest, StartInfo
from streamd.webrtc.chunk_cache import FileChunks
from streamd.webrtc.chunk_convert import ChunkJob
from streamd.webrtc.file_chunks import Chunk, ChunkPlan, ChunkReader

log = logging.getLogger(__name__)

START_LEAD = Fraction(1)  # media seconds converted before a viewer starts (or goes on after a seek)
CHUNK_READ = 1.2  # media seconds past the lookahead per read: a list walk on the loop, small and often


class ConvertingReader:
    """A reader whose chosen video tracks come out as H.264 (``VideoToH264``); the rest as read."""

    def __init__(self, inner: MediaReader | TranscodingReader, converters: dict[int, VideoToH264]) -> None:
        self.inner = inner
        self.converters = converters
        self._out: list[AccessUnit] = []
        self._ended = False

    def read(self) -> AccessUnit | None:
        while not self._out:
            au = self.inner.read()
            if au is None:
                if self._ended:
                    return None
                self._ended = True
                for converter in self.converters.values():
                    self._out += converter.flush()
                if not self._out:
                    return None
                break
            converter = self.converters.get(au.stream_index)
            if converter is None:
                return au
            self._out += converter.feed(au)
        return self._out.pop(0)

    def seek(self, seconds: Fraction) -> Fraction:
        actual = self.inner.seek(seconds)
        self._out.clear()
        self._ended = False
        for converter in self.converters.values():
            converter.reset()
        return actual

    def close(self) -> None:
        self.inner.close()


class WebrtcPlayback(Playback):
    """``video``: indices of the tracks to convert (their presentation track is already H.264);
    ``chunks``: the shared converted chunks (None: this viewer converts for itself)."""

    video: frozenset[int] = frozenset()
    chunks: FileChunks | None = None
    _job: ChunkJob | None = None
    _plan: ChunkPlan | None = None
    _unchunkable = False  # no keyframe index (a raw stream): this viewer converts for itself

    @property
    def _chunked(self) -> bool:
        p = self.presentation
        converts = bool(self.video & set(self.bindings)) or any(i in self.bindings for i, _ in p.transcode)
        usable = self.chunks is not None and not self._unchunkable
        opus_only = all(target == "opus" for i, target in p.transcode if i in self.bindings)
        return usable and converts and opus_only and p.mode == "tracks" and not p.loop

    async def prepare(self, request: PlayRequest) -> StartInfo:
        if not self._chunked:
            return await super().prepare(request)
        await self._settle()
        try:
            await self._load_plan()
        except MediaError as exc:
            log.warning("%s: converted as it plays, for this viewer alone: %s", self.label, exc)
            self._unchunkable = True
            return await super().prepare(request)
        if self._reader is None and request.start:
            self._reader = self._open_chunk_reader()
        reader = self._reader
        assert self.chunks is not None
        time_bases = {t.index: t.time_base for t in self.presentation.info.tracks}
        if request.start and isinstance(reader, ChunkReader):  # a seek: to a keyframe of its chunk
            target = request.start + self.presentation.origin
            n = reader.chunk_at(target)
            chunk = reader.held(n)
            if chunk is None:
                chunk = self._chunk(n)
                reader.give(n, chunk)
            await self.chunks.reached(chunk, target)  # the keyframe nearest before it is known
            await self.chunks.ahead(chunk, target, START_LEAD, time_bases)
        elif request.start is not None or self._reader is None:  # from the beginning
            await self.chunks.ahead(self._chunk(0), None, START_LEAD, time_bases)
        return await super().prepare(request)

    async def _load_plan(self) -> None:
        if self._plan is not None:
            return
        assert self.chunks is not None
        p = self.presentation
        source = p.source_info or p.info
        transcode = dict(p.transcode)
        tracks = tuple(
            (i, "h264" if i in self.video else "opus" if transcode.get(i) == "opus" else "copy")
            for i in sorted(self.bindings)
        )
        self._job = ChunkJob(self.file, source, tracks)
        videos = [i for i, _ in tracks if source.track(i).kind == "video"]
        reference = videos[0] if videos else tracks[0][0]  # cuts are its keyframes: demux it alone
        self._plan = await self.chunks.plan(self.file, source, (reference,))

    def _open_chunk_reader(self) -> ChunkReader:
        assert self._plan is not None
        return ChunkReader(self._plan, {t.index: t.time_base for t in self.presentation.info.tracks})

    def _chunk(self, n: int) -> Chunk:
        """Chunk ``n``, converted or being converted (for every viewer of the file)."""
        assert self.chunks is not None and self._job is not None and self._plan is not None
        return self.chunks.chunk(self._job, self._plan, n)

    def _open_reader(self):  # type: ignore[no-untyped-def]
        if self._chunked and self._plan is not None:
            return self._open_chunk_reader()
        p = self.presentation
        source = p.source_info or p.info
        indices = list(self.bindings)
        inner: MediaReader | TranscodingReader
        if p.transcode:
            inner = TranscodingReader(self.file, source, indices, dict(p.transcode), loop=p.loop)
        else:
            inner = MediaReader(self.file, source, indices, loop=p.loop)
        converters = {i: VideoToH264(source.track(i)) for i in self.video if i in indices}
        return ConvertingReader(inner, converters) if converters else inner

    # --- reading chunks: on the loop, fetching the one missing -------------------------------

    def _set_read_chunk(self) -> None:
        if isinstance(self._reader, ChunkReader):
            self._core.read_chunk = CHUNK_READ
        else:
            super()._set_read_chunk()

    def _read_until(self, until: float, room: int) -> tuple[list[AccessUnit], bool]:
        units, eof = super()._read_until(until, room)
        if isinstance(self._reader, ChunkReader) and self._reader.waiting_for is not None:
            eof = False  # not the end: a chunk to fetch
        return units, eof

    def _start_read(self, until: float) -> asyncio.Future[tuple[list[AccessUnit], bool]] | None:
        reader = self._reader
        if not isinstance(reader, ChunkReader):
            return super()._start_read(until)
        room = MAX_QUEUED_UNITS - len(self._core.queue)
        if room <= 0:
            return None
        self._take(*self._read_until(until, room))
        self._ask_ahead(reader)
        missing = reader.waiting_for
        if missing is None:
            return None
        future = asyncio.ensure_future(self._fetch_and_read(reader, missing, until))
        future.add_done_callback(self._absorb)
        self._pending_read = future
        self._core.reading = True
        return future

    async def _fetch_and_read(
        self, reader: ChunkReader, n: int, until: float
    ) -> tuple[list[AccessUnit], bool]:
        """Wait for chunk ``n`` (or, being converted, for more of it), then read on."""
        assert self.chunks is not None
        chunk = reader.held(n)
        if chunk is None:
            chunk = self._chunk(n)
            reader.give(n, chunk)
        await self.chunks.grown(chunk, reader.waiting_at)
        if reader is not self._reader:
            return [], False
        return self._read_until(until, max(0, MAX_QUEUED_UNITS - len(self._core.queue)))

    def _ask_ahead(self, reader: ChunkReader) -> None:
        """Have the next chunk converted while the rest of this one plays."""
        n = reader.next_wanted()
        if n is not None:
            reader.give(n, self._chunk(n))
