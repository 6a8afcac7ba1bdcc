"""Fragmented MP4 for browsers, made on the fly from any file PyAV opens.

Codecs that MP4 carries and browsers decode are copied packet for packet (no re-encode); others
are re-encoded (video to H.264, audio to AAC) so a ``<video>`` element can still play the path.
The output starts at the video keyframe at or before the requested time, with timestamps
shifted so that keyframe is at 0.

PyAV is blocking, so :func:`remux` runs in a worker thread and hands finished fragments to the
event loop through :class:`ChunkPipe`, which holds at most a few chunks: a slow reader slows the
remux down, and a reader that goes away stops it at the next packet.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from fractions import Fraction
from pathlib import Path
from typing import Any

import av

from media.muxer import FRAGMENTED_MP4

log = logging.getLogger(__name__)

# Codecs copied as they are: MP4 has a sample entry for them and browsers decode them.
COPY_VIDEO = frozenset({"h264", "hevc", "av1", "vp9"})
COPY_AUDIO = frozenset({"aac", "mp3", "opus", "flac"})
MAX_QUEUED_CHUNKS = 8
STALL_SECONDS = 30.0  # a client that takes no bytes for this long is dropped (its remux stops)


class Cancelled(Exception):
    """The reader went away; the worker unwinds."""


class Stalled(Exception):
    """The HTTP client stopped reading."""


async def send_chunks(pipe: ChunkPipe, response: Any) -> None:
    """Write ``pipe``'s chunks to ``response`` (an aiohttp ``StreamResponse``) to the end.

    ``Stalled`` when one write waits ``STALL_SECONDS`` for the client: without it, a client that
    connects and never reads would hold its handler and worker thread for as long as the TCP
    connection lives."""
    while (chunk := await pipe.read()) is not None:
        try:
            await asyncio.wait_for(response.write(chunk), STALL_SECONDS)
        except TimeoutError:
            raise Stalled(f"not read for {STALL_SECONDS:g} s") from None
    await response.write_eof()


class ChunkPipe:
    """Bytes from the worker thread to the event loop, at most ``MAX_QUEUED_CHUNKS`` in flight."""

    def __init__(self, loop: asyncio.AbstractEventLoop, depth: int = MAX_QUEUED_CHUNKS) -> None:
        self._loop = loop
        self._queue: asyncio.Queue[bytes | BaseException | None] = asyncio.Queue()
        self._slots = threading.Semaphore(depth)
        self._stop = threading.Event()

    # --- worker side (thread) ---

    def write(self, data: bytes) -> int:
        """File-object ``write`` for the muxer; blocks while the pipe is full."""
        if data:
            while not self._slots.acquire(timeout=0.1):
                if self._stop.is_set():
                    raise Cancelled
            if self._stop.is_set():
                raise Cancelled
            self._loop.call_soon_threadsafe(self._queue.put_nowait, bytes(data))
        return len(data)

    def check(self) -> None:
        if self._stop.is_set():
            raise Cancelled

    def finish(self, error: BaseException | None = None) -> None:
        self._loop.call_soon_threadsafe(self._queue.put_nowait, error)

    # --- event loop side ---

    async def read(self) -> bytes | None:
        """The next chunk, or None at the end; re-raises the worker's error."""
        item = await self._queue.get()
        if isinstance(item, bytes):
            self._slots.release()
            return item
        if item is not None:
            raise item
        return None

    def cancel(self) -> None:
        self._stop.set()

    @property
    def cancelled(self) -> bool:
        return self._stop.is_set()


def _plan(container: av.container.InputContainer, to_h264: bool = False) -> dict[int, str]:
    """``to_h264``: convert any video but H.264 (``?video=h264``, for browsers without its decoder)."""
    result: dict[int, str] = {}
    video = next((s for s in container.streams.video), None)
    audio = next((s for s in container.streams.audio), None)
    if video is not None:
        name = video.codec_context.name
        result[video.index] = "copy" if name in COPY_VIDEO and not (to_h264 and name != "h264") else "encode"
    if audio is not None:
        result[audio.index] = "copy" if audio.codec_context.name in COPY_AUDIO else "encode"
    return result


def remux(file: Path, start: float, pipe: ChunkPipe, to_h264: bool = False) -> None:
    """Write ``file`` from ``start`` seconds as fragmented MP4 into ``pipe``; always finishes it."""
    error: BaseException | None = None
    try:
        _remux(file, start, pipe, to_h264)
    except Cancelled:
        pass
    except BaseException as exc:  # the handler reports it; the worker thread must not die silently
        error = exc
    finally:
        pipe.finish(error)


def _remux(file: Path, start: float, pipe: ChunkPipe, to_h264: bool) -> None:
    with av.open(str(file)) as source:
        actions = _plan(source, to_h264)
        if not actions:
            raise ValueError("no audio or video track")
        inputs = {s.index: s for s in source.streams if s.index in actions}
        video = next((s for s in inputs.values() if s.type == "video"), None)
        if start > 0:
            anchor = video or next(iter(inputs.values()))
            tb = anchor.time_base or Fraction(1, 1_000_000)
            source.seek(int(start / tb) + (anchor.start_time or 0), stream=anchor, backward=True)
        with av.open(pipe, mode="w", format="mp4", options=dict(FRAGMENTED_MP4)) as sink:  # type: ignore[call-overload]
            outputs = {index: _output(sink, stream, actions[index]) for index, stream in inputs.items()}
            _transfer(source, inputs, actions, outputs, video.index if video else None, pipe)


def _output(sink: Any, stream: Any, action: str) -> Any:
    """The output stream for ``stream``: a copy of it, or an H.264/AAC encoder browsers decode."""
    if action == "copy":
        return sink.add_stream_from_template(stream)
    context = stream.codec_context
    if stream.type == "video":
        out = sink.add_stream("libx264", rate=stream.average_rate or 25)
        out.width, out.height, out.pix_fmt = context.width, context.height, "yuv420p"
        out.options = {"preset": "veryfast"}
        return out
    out = sink.add_stream("aac", rate=context.sample_rate or 48000)
    out.layout = context.layout.name if context.layout else "stereo"
    return out


def _transfer(
    source: Any,
    inputs: dict[int, Any],
    actions: dict[int, str],
    outputs: dict[int, Any],
    video: int | None,
    pipe: ChunkPipe,
) -> None:
    """Demux, shift timestamps so the first video keyframe is at 0, copy or re-encode, mux."""
    offset: dict[int, int] = {}  # per stream: ticks subtracted
    origin: Fraction | None = None  # seconds of the first video keyframe
    for packet in source.demux(list(inputs.values())):
        pipe.check()
        index = packet.stream.index
        if packet.dts is None and packet.pts is None and packet.size == 0:
            continue  # the demuxer's flush packet
        tb = packet.time_base
        if origin is None:
            if video is not None and (index != video or not packet.is_keyframe):
                continue  # nothing before the first video keyframe: browsers would show garbage
            stamp = packet.dts if packet.dts is not None else packet.pts
            origin = Fraction(stamp or 0) * tb
        shift = offset.setdefault(index, int(origin / tb))
        out = outputs[index]
        if actions[index] == "copy":
            if packet.pts is not None:
                packet.pts -= shift
            if packet.dts is not None:
                packet.dts -= shift
                if packet.dts < 0 and index != video:
                    continue  # audio from before the keyframe
            packet.stream = out
            out.container.mux(packet)
            continue
        for frame in packet.decode():
            if frame.pts is None:
                continue
            frame.pts -= int(shift * tb / frame.time_base)
            if frame.pts >= 0:
                out.container.mux(out.encode(frame))
    for index, out in outputs.items():
        if actions[index] == "encode":
            out.container.mux(out.encode(None))
