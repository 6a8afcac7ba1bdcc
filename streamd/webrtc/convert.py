"""A live path's tracks that browsers cannot take, converted once for all its WebRTC viewers
(audio to Opus on the loop, HEVC and H.264 with B-frames to H.264 in a thread of its own).

The converter taps the hub's access units of one track (``LivePath.unit_listeners``, where the
recorder taps too), decodes and re-encodes them with the same ``AudioTranscoder`` files use, and
packetizes each Opus unit once; every WebRTC viewer of the path gets those payloads with its own
header, as it gets the hub's. The first viewer starts it, the last one stops it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import replace
from fractions import Fraction

from media.access_unit import AccessUnit
from media.errors import MediaError
from media.track import AacConfig, Track
from media.transcode import AudioTranscoder
from media.video_transcode import VideoToH264
from streamd.live.hub import LivePath, LiveTrack, Payloads
from streamd.rtp.payload.base import PayloadFormat
from streamd.rtp.payload.registry import payload_format_for

log = logging.getLogger(__name__)

Listener = Callable[[int, int, Payloads, bool, bool], None]
CONVERTIBLE = ("aac", "mp3", "mp2", "ac3", "eac3")
CONVERTED_PAYLOAD = 1200  # bytes per packet of converted video


def video_convertible(track: Track) -> bool:
    return track.kind == "video" and track.codec == "hevc"


def live_video_convertible(track: LiveTrack) -> bool:
    """HEVC, or H.264 whose pictures the hub saw come out of order (B-frames: RTP cannot say
    so up front, and the SPS need not)."""
    codec = track.announced.track
    return video_convertible(codec) or (codec.codec == "h264" and track.order.reordered)


def live_convertible(track: LiveTrack) -> bool:
    """A live track whose WebRTC viewers get it from a shared converter."""
    return convertible(track.announced.track) or live_video_convertible(track)


class AudioToOpus:
    """One track of one live path, as Opus (48 kHz ticks), for any number of listeners."""

    def __init__(self, live: LivePath, index: int) -> None:
        self.live = live
        self.index = index
        source = decodable(live.tracks[index].announced.track)
        self.source_rate = live.tracks[index].clock_rate
        self.coder = AudioTranscoder(source, "opus")
        self.track: Track = replace(self.coder.track, index=index)
        self.payload_format: PayloadFormat = payload_format_for(self.track, 111)
        self.listeners: set[Listener] = set()
        self.failed = False
        live.unit_listeners.add(self._unit)

    def close(self) -> None:
        self.live.unit_listeners.discard(self._unit)
        self.listeners.clear()

    def _unit(self, track: LiveTrack, au: AccessUnit) -> None:
        if track.index != self.index or self.failed or not self.listeners:
            return
        try:
            units = self.coder.feed(au)
        except (MediaError, ValueError, OSError) as exc:  # PyAV's errors are OSErrors
            self.failed = True
            log.warning("%s: converting track %d to Opus stopped: %s", self.live.name, self.index, exc)
            return
        for unit in units:
            payloads = self.payload_format.packetize(unit)
            for listener in list(self.listeners):
                listener(self.index, unit.pts, payloads, True, False)

    def request_keyframe(self) -> None:
        pass  # every Opus frame is one

    def ticks(self, source_ticks: int) -> int:
        """A source timestamp (the path's clock for this track) in Opus's 48 kHz."""
        return round(Fraction(source_ticks * 48000, self.source_rate))


def convertible(track: Track) -> bool:
    return track.kind == "audio" and track.codec in CONVERTIBLE


def decodable(track: Track) -> Track:
    """The announced track with what a decoder needs: AAC's AudioSpecificConfig as extradata."""
    if track.codec == "aac" and not track.extradata and isinstance(track.config, AacConfig):
        config = track.config
        return replace(track, extradata=config.audio_specific_config, sample_rate=config.sample_rate)
    return track


MAX_QUEUED_VIDEO = 120  # access units between the hub and the converting thread (then dropped)


class VideoToH264Path:
    """One live path's HEVC (or H.264 with B-frames) track as constrained-baseline H.264, made
    once for all its WebRTC viewers: the hub's units go to a thread that decodes and encodes them
    (bounded queue: behind, it drops until the next keyframe), the H.264 comes back to the loop
    and is packetized once."""

    def __init__(self, live: LivePath, index: int) -> None:
        self.live = live
        self.index = index
        self.coder = VideoToH264(live.tracks[index].announced.track)
        self.track: Track = self.coder.track
        self.payload_format: PayloadFormat = payload_format_for(self.track, 102, CONVERTED_PAYLOAD)
        self.listeners: set[Listener] = set()
        self.dropped = 0
        self.failed = False
        self._loop = asyncio.get_running_loop()
        self._queue: queue.Queue[AccessUnit | None] = queue.Queue(MAX_QUEUED_VIDEO)
        self._skipping = False
        self._thread = threading.Thread(target=self._work, name=f"webrtc-h264 {live.name}", daemon=True)
        self._thread.start()
        live.unit_listeners.add(self._unit)

    def close(self) -> None:
        self.live.unit_listeners.discard(self._unit)
        self.listeners.clear()
        with contextlib.suppress(queue.Full):
            self._queue.put_nowait(None)

    def request_keyframe(self) -> None:
        self.coder.force_keyframe()

    def ticks(self, source_ticks: int) -> int:
        return source_ticks  # 90 kHz in, 90 kHz out

    def _unit(self, track: LiveTrack, au: AccessUnit) -> None:
        if track.index != self.index or self.failed:
            return
        if self._skipping and not au.keyframe:
            self.dropped += 1
            return
        try:
            self._queue.put_nowait(au)
            self._skipping = False
        except queue.Full:
            self.dropped += 1
            if not self._skipping:
                log.warning(
                    "%s: converting to H.264 falls behind; dropping to the next keyframe", self.live.name
                )
            self._skipping = True

    def _work(self) -> None:
        while True:
            au = self._queue.get()
            if au is None:
                return
            try:
                units = self.coder.feed(au)
            except MediaError as exc:
                self.failed = True
                log.warning("%s: converting to H.264 stopped: %s", self.live.name, exc)
                return
            if units:
                with contextlib.suppress(RuntimeError):  # the loop is closing
                    self._loop.call_soon_threadsafe(self._deliver, units)

    def _deliver(self, units: list[AccessUnit]) -> None:
        for unit in units:
            payloads = self.payload_format.packetize(unit)
            for listener in list(self.listeners):
                listener(self.index, unit.pts, payloads, unit.keyframe, False)


Converter = AudioToOpus | VideoToH264Path


def make_converter(live: LivePath, index: int) -> Converter:
    video = live_video_convertible(live.tracks[index])
    return VideoToH264Path(live, index) if video else AudioToOpus(live, index)
