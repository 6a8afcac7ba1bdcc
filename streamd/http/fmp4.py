"""Fragmented MP4 for browsers, made on the fly from any file PyAV opens.

Codecs that MP4 carries and browsers decode are copied packet for packet (no re-encode); others
are re-encoded (video to H.264, audio to AAC) so a ``<video>`` element can still play the path.
The output starts at the video keyframe at or before the requested time, with timestamps
shifted so that keyframe is at 0.

PyAV is blocking, so the remux runs in steps on the ``remux`` pool (streamd/executors.py): each
step muxes packets until about ``STEP_BYTES`` are ready, then gives its thread back; the handler
sends them and only asks for the next step once the client has taken them. A client that stops
reading therefore parks its remux (a suspended generator) and costs no thread; one that takes
nothing for ``STALL_SECONDS`` is dropped. :class:`ChunkPipe` is the thread-to-loop pipe that a
live path's muxing thread (streamd/http/live_mp4.py) writes into.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
from aiohttp import web

from media.muxer import FRAGMENTED_MP4
from media.transcode import encoder_format
from streamd import executors
from streamd.limits import Admission

log = logging.getLogger(__name__)

# Codecs copied as they are: MP4 has a sample entry for them and browsers decode them.
COPY_VIDEO = frozenset({"h264", "hevc", "av1", "vp9"})
COPY_AUDIO = frozenset({"aac", "mp3", "opus", "flac"})
MAX_QUEUED_CHUNKS = 8
STEP_BYTES = 256 * 1024  # one remux step stops once this much output is ready
STALL_SECONDS = 30.0  # a client that takes no bytes for this long is dropped (its remux stops)
GONE_CHECK_SECONDS = 0.1  # while a step runs, how often the handler looks whether its client left
FINISHING = "(clients gone, steps finishing)"  # the admission key of remuxes whose client left


class Cancelled(Exception):
    """The reader went away; the worker unwinds."""


class Stalled(Exception):
    """The HTTP client stopped reading."""


class ClientGone(ConnectionResetError):
    """The HTTP client closed its connection while a remux step was running."""


def _never() -> bool:
    return False


def _nothing() -> None:
    return None


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
        name = video.codec_context.codec.canonical_name  # the codec, not PyAV's decoder (libdav1d)
        result[video.index] = "copy" if name in COPY_VIDEO and not (to_h264 and name != "h264") else "encode"
    if audio is not None:
        result[audio.index] = "copy" if audio.codec_context.name in COPY_AUDIO else "encode"
    return result


class Chunks:
    """The muxer's output file: collects what it writes until the handler takes it.

    Only one thread touches it at a time (a remux step, then the handler between steps)."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.size = 0

    def write(self, data: bytes) -> int:
        if data:
            self.parts.append(bytes(data))
            self.size += len(data)
        return len(data)

    def take(self) -> bytes:
        data = b"".join(self.parts)
        self.parts.clear()
        self.size = 0
        return data


class Remux:
    """``file`` from ``start`` seconds as fragmented MP4, made one step at a time on demand."""

    def __init__(self, file: Path, start: float, to_h264: bool = False) -> None:
        self.output = Chunks()
        self._steps = _remux(file, start, self.output, to_h264)
        self.done = False

    def step(self, budget: int = STEP_BYTES) -> bytes:
        """Mux until ``budget`` bytes are ready or the file ends (``done``); blocking (run it in
        the remux pool). Errors from PyAV propagate and end the remux."""
        try:
            while self.output.size < budget:
                next(self._steps)
        except StopIteration:
            self.done = True
        except BaseException:
            self.done = True
            raise
        return self.output.take()

    def close(self) -> None:
        """Stop early: closes the files (blocking; run it in the remux pool)."""
        self.done = True
        self._steps.close()


async def stream_remux(
    remux: Remux,
    response: web.StreamResponse,
    gone: Callable[[], bool] = _never,
    left: Callable[[], None] = _nothing,
) -> None:
    """Send ``remux``'s output to ``response`` (an aiohttp ``StreamResponse``) to the end.

    The next step runs only after the client took the previous one, so a client that stops
    reading holds no thread; ``Stalled`` when one write waits ``STALL_SECONDS``. While a step
    runs (seconds on a loaded machine), ``gone()`` is asked every ``GONE_CHECK_SECONDS``. When
    the client has left (``ClientGone``, or any ``ConnectionError`` writing to it), ``left()`` is
    called at once, to free its share, and the error raised once the remux is closed. The remux
    is closed whatever happens (also when the handler is cancelled)."""
    step: asyncio.Future[bytes] | None = None
    try:
        while not remux.done:
            step = asyncio.ensure_future(executors.run("remux", remux.step))
            while not (await asyncio.wait([step], timeout=GONE_CHECK_SECONDS))[0]:
                if gone():
                    raise ClientGone("the client left during a remux step")
            data = step.result()
            step = None
            if data:
                try:
                    await asyncio.wait_for(response.write(data), STALL_SECONDS)
                except TimeoutError:
                    raise Stalled(f"not read for {STALL_SECONDS:g} s") from None
        await response.write_eof()
    except ConnectionError:  # the client left: its share is free before the remux winds down
        left()
        raise
    finally:
        if step is not None:  # cancelled or left mid-step: let the step finish before closing
            await asyncio.wait([step])
        if not remux.done:
            await asyncio.shield(executors.run("remux", remux.close))


async def serve_file(
    request: web.Request, path: str, file: Path, start: float, remuxes: Admission, *, to_h264: bool = False
) -> web.StreamResponse:
    """The ``/mp4`` response for ``file`` (an aiohttp handler's body); 503 beyond ``remuxes``.

    ``to_h264`` converts video that is not H.264 (the watch page asks when the browser lacks the
    file's decoder)."""
    client = request.remote or ""
    with remuxes.hold(client) as held:
        response = web.StreamResponse(headers={"Content-Type": "video/mp4", "Cache-Control": "no-store"})
        response.enable_chunked_encoding()
        try:
            await response.prepare(request)
            if request.method == "HEAD":
                return response
            # a player that left and comes straight back (a reload, a seek) is not refused for
            # the remux it abandoned: that one counts in the server's total until its step ends
            await stream_remux(
                Remux(file, start, to_h264),
                response,
                lambda: _left(request),
                lambda: held.hand_over(FINISHING),
            )
        except ConnectionError:  # the client left mid-stream: the usual end of watching
            log.debug("%s: /mp4/%s client went away", client, path)
        except Stalled as exc:
            log.warning("%s: /mp4/%s: %s; closing", client, path, exc)
            request.transport and request.transport.close()
        except Exception as exc:
            log.warning("%s: /mp4/%s: remux failed: %s", client, path, exc)
            request.transport and request.transport.close()  # the body is cut short: never a clean end
        return response


def _left(request: web.Request) -> bool:
    """Whether the client of ``request`` closed its connection (aiohttp drops the transport)."""
    transport = request.transport
    return transport is None or transport.is_closing()


def remux(file: Path, start: float, pipe: ChunkPipe) -> None:
    """Blocking: all of ``file`` from ``start`` into ``pipe``; always finishes it."""
    error: BaseException | None = None
    job = Remux(file, start)
    try:
        while not job.done:
            pipe.write(job.step())
    except Cancelled:
        job.close()
    except BaseException as exc:  # the reader reports it; the worker thread must not die silently
        error = exc
    finally:
        pipe.finish(error)


def _remux(file: Path, start: float, sink_file: Chunks, to_h264: bool = False) -> Iterator[None]:
    """Yields after each packet muxed; closing the generator closes both files."""
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
        with av.open(sink_file, mode="w", format="mp4", options=dict(FRAGMENTED_MP4)) as sink:  # type: ignore[call-overload]
            outputs = {index: _output(sink, stream, actions[index]) for index, stream in inputs.items()}
            yield from _transfer(source, inputs, actions, outputs, video.index if video else None)


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
    rate, layout = encoder_format(context.sample_rate, context.channels, "aac")
    out = sink.add_stream("aac", rate=rate)
    out.layout, out.format = layout, "fltp"  # PyAV resamples frames to this when encoding
    return out


def _transfer(
    source: Any,
    inputs: dict[int, Any],
    actions: dict[int, str],
    outputs: dict[int, Any],
    video: int | None,
) -> Iterator[None]:
    """Demux, shift timestamps so the first video keyframe is at 0, copy or re-encode, mux."""
    offset: dict[int, int] = {}  # per stream: ticks subtracted
    origin: Fraction | None = None  # seconds of the first video keyframe
    for packet in source.demux(list(inputs.values())):
        yield
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
