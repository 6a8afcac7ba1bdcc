"""A live path fed by the Python program streamd runs in: numpy frames (and audio) in, readers out.

``send()`` only queues: encoding happens in a worker thread, so neither an OpenCV loop nor the
event loop ever waits for x264. The queue is bounded; when the encoder falls behind, the oldest
frames go (counted, logged once) so what viewers see stays close to now. Encoded units are handed
to the event loop thread, where the path packetizes them once for every reader.

Timestamps: tick 0 of every track is the moment the publisher was made. A frame is stamped with
the slot of the ``fps`` grid nearest the moment ``send()`` is called (or with the time the caller
gives); audio by its sample count from the first chunk, dropped audio replaced by silence, so
audio stays in step with the pictures.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from media.access_unit import AccessUnit
from media.errors import MediaError
from media.live_encoder import VIDEO_CLOCK, FrameClock, LiveAudioEncoder, LiveVideoEncoder
from streamd.live.announced import AnnouncedTrack
from streamd.live.hub import LivePath
from streamd.rtp.payload.registry import payload_format_for

log = logging.getLogger(__name__)

MAX_QUEUED_FRAMES = 8
MAX_QUEUED_AUDIO_SECONDS = 2.0


@dataclass(frozen=True)
class VideoSettings:
    width: int
    height: int
    fps: float
    pixel_format: str = "rgb24"  # "bgr24" for OpenCV; also rgba, bgra, gray, yuv420p
    bit_rate: int | None = None  # None: x264's constant quality default
    keyframe_interval: float = 1.0  # seconds: the longest a new viewer waits for a picture


@dataclass(frozen=True)
class AudioSettings:
    sample_rate: int = 48000
    channels: int = 2
    codec: str = "aac"  # or "opus"
    bit_rate: int = 128_000


def path_tracks(video: LiveVideoEncoder, audio: LiveAudioEncoder | None) -> list[AnnouncedTrack]:
    """The path's tracks, known before the first frame (the encoders' extradata holds the config)."""
    tracks = [video.track] + ([audio.track] if audio is not None else [])
    return [
        AnnouncedTrack(t.index, f"trackID={t.index}", t, payload_format_for(t, 96 + t.index), True)
        for t in tracks
    ]


class FramePublisher:
    """What ``publish()`` returns. ``send``/``send_audio`` work from any thread; ``close`` ends the path."""

    def __init__(
        self,
        name: str,
        loop: asyncio.AbstractEventLoop,
        video: VideoSettings,
        audio: AudioSettings | None = None,
        *,
        on_close: Callable[[LivePath], None],
        max_queued_frames: int = MAX_QUEUED_FRAMES,
    ) -> None:
        self.name = name
        self._video = LiveVideoEncoder(
            video.width,
            video.height,
            video.fps,
            pixel_format=video.pixel_format,
            bit_rate=video.bit_rate,
            keyframe_interval=video.keyframe_interval,
            index=0,
        )
        self._audio = (
            LiveAudioEncoder(audio.sample_rate, audio.channels, codec=audio.codec, bit_rate=audio.bit_rate)
            if audio is not None
            else None
        )
        self._started = time.monotonic()
        self._grid = FrameClock(self._video.frame_rate)
        self.path = LivePath.from_tracks(
            name, path_tracks(self._video, self._audio), f"python publisher {name}", started=time.time()
        )
        self._loop = loop
        self._on_close = on_close
        self._frames: deque[tuple[np.ndarray, int]] = deque()
        self._chunks: deque[tuple[np.ndarray, int]] = deque()  # samples, position in input samples
        self._max_frames = max(1, max_queued_frames)
        self._max_samples = round(MAX_QUEUED_AUDIO_SECONDS * (audio.sample_rate if audio else 1))
        self._queued_samples = 0
        self._audio_position = 0  # input samples accepted so far (dropped ones included)
        self._audio_fed = 0  # ... and handed to the encoder (silence included)
        self._audio_start: int | None = None  # track ticks of the first chunk
        self._cond = threading.Condition()
        self._closed = False
        self._ended = False  # on_close called
        self._thinning = False  # logged that frames come faster than fps
        self.error: BaseException | None = None
        self.frames_sent = 0
        self.frames_dropped = 0
        self.frames_encoded = 0
        self.audio_samples_dropped = 0
        self._worker = threading.Thread(target=self._work, name=f"streamd encoder {name}", daemon=True)
        self._worker.start()

    # --- the caller's side ------------------------------------------------------------------

    def send(self, frame: np.ndarray, timestamp: float | None = None) -> None:
        """Queue one picture taken ``timestamp`` seconds after publish (default: now). Never blocks.

        Without ``timestamp`` the frame goes on the ``fps`` grid (see ``FrameClock``): a frame sent
        more than one frame ahead of it is dropped, so a source faster than ``fps`` is thinned.
        """
        self._video.check(frame)
        with self._cond:
            self._check_open()
            self.frames_sent += 1
            if timestamp is not None:
                ticks: int | None = round(timestamp * VIDEO_CLOCK)
            else:
                ticks = self._grid.ticks(time.monotonic() - self._started)
            if ticks is None:  # more than a frame ahead of fps: thinned
                self.frames_dropped += 1
                if not self._thinning:
                    self._thinning = True
                    log.warning(
                        "%s: frames come faster than %s fps; dropping the extra ones",
                        self.name,
                        self._grid.fps,
                    )
                return
            self._frames.append((np.array(frame, copy=True), ticks))
            while len(self._frames) > self._max_frames:
                self._frames.popleft()
                self.frames_dropped += 1
                if self.frames_dropped == 1:
                    log.warning("%s: the encoder falls behind; dropping the oldest frames", self.name)
            self._cond.notify()

    def send_audio(self, samples: np.ndarray) -> None:
        """Queue a chunk of samples (int16, or float in [-1, 1]; ``(n, channels)`` or ``(n,)`` mono)."""
        if self._audio is None:
            raise RuntimeError(f"{self.name}: published without audio (pass sample_rate= to publish)")
        self._audio.check(samples)
        with self._cond:
            self._check_open()
            if self._audio_start is None:
                self._audio_start = round((time.monotonic() - self._started) * self._audio.rate)
            self._chunks.append((np.array(samples, copy=True), self._audio_position))
            self._audio_position += len(samples)
            self._queued_samples += len(samples)
            while self._queued_samples > self._max_samples and len(self._chunks) > 1:
                dropped, _ = self._chunks.popleft()
                self._queued_samples -= len(dropped)
                self.audio_samples_dropped += len(dropped)
            self._cond.notify()

    def close(self) -> None:
        """Stop encoding and take the path offline (readers get RTCP BYE). Idempotent."""
        with self._cond:
            self._closed = True
            self._cond.notify()
        if threading.current_thread() is not self._worker:
            self._worker.join()
        self._end()

    def _end(self) -> None:
        with self._cond:
            if self._ended:
                return
            self._ended = True
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self._loop:
            self._on_close(self.path)
        else:
            with contextlib.suppress(RuntimeError):  # the server's loop is gone: nothing left to tell
                self._loop.call_soon_threadsafe(self._on_close, self.path)
        log.info(
            "%s: publisher closed: %d frames sent, %d encoded, %d dropped",
            self.name,
            self.frames_sent,
            self.frames_encoded,
            self.frames_dropped,
        )

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> FramePublisher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _check_open(self) -> None:
        if self._closed:
            reason = f": {self.error}" if self.error is not None else ""
            raise RuntimeError(f"{self.name}: the publisher is closed{reason}")

    # --- the worker thread ------------------------------------------------------------------

    def _work(self) -> None:
        try:
            while True:
                with self._cond:
                    while not (self._frames or self._chunks or self._closed):
                        self._cond.wait()
                    if self._closed:
                        return
                    chunks = list(self._chunks)
                    self._chunks.clear()
                    self._queued_samples = 0
                    frame = self._frames.popleft() if self._frames else None
                units = self._encode_audio(chunks)
                if frame is not None:
                    units += self._video.encode(*frame)
                    self.frames_encoded += 1
                if units:
                    self._loop.call_soon_threadsafe(self._deliver, units)
        except (MediaError, RuntimeError) as exc:  # RuntimeError: the event loop was closed under us
            log.error("%s: encoding stopped: %s", self.name, exc)
            self.error = exc
            with self._cond:
                self._closed = True
            self._end()

    def _encode_audio(self, chunks: list[tuple[np.ndarray, int]]) -> list[AccessUnit]:
        if self._audio is None or not chunks:
            return []
        units: list[AccessUnit] = []
        start = self._audio_start or 0
        for samples, position in chunks:
            if position > self._audio_fed:  # chunks were dropped: keep the timeline with silence
                gap = np.zeros((position - self._audio_fed, *samples.shape[1:]), samples.dtype)
                units += self._audio.encode(gap, start)
            units += self._audio.encode(samples, start)
            self._audio_fed = position + len(samples)
        return units

    def _deliver(self, units: list[AccessUnit]) -> None:
        """On the event loop thread: into the path, which packetizes and fans out."""
        for au in units:
            self.path.push_unit(au.stream_index, au)
