"""An audio track re-encoded to AAC once, whole, for HLS: the codecs HLS players cannot take
(FLAC, Vorbis, PCM, DTS, ...) become one continuous AAC stream whose packets every segment then
picks from, so segment joins have no encoder priming or gaps (re-encoding per segment would).

The encode runs in a thread of its own (at most ``MAX_ENCODING`` at once) and packets become
available as it goes: a segment waits only until the encode has passed its end (at most
``wait`` seconds, then :class:`StillEncoding`), so playing from the start begins at once while
the rest of a long track is still being encoded.
"""

from __future__ import annotations

import bisect
import io
import os
import threading
from fractions import Fraction
from typing import Any

import av

from media.errors import MediaError
from media.track import MediaInfo
from media.transcode import TranscodingReader, transcoded_track

MAX_ENCODING = 2  # tracks being encoded at once; more wait for a turn
BYTES_PER_SECOND = 20_000  # of AAC at FFmpeg's default rate, with room to spare
_turns = threading.BoundedSemaphore(MAX_ENCODING)


class StillEncoding(MediaError):
    """The encode has not reached the time asked for yet; ask again shortly."""


class EncodedAudio:
    """A track's AAC packets, (pts, dts, duration, data) in ``1 / sample_rate`` ticks, growing
    while :func:`start_encoding`'s thread runs; thread-safe."""

    def __init__(self, stream_index: int, sample_rate: int, channels: int, extradata: bytes) -> None:
        self.stream_index = stream_index
        self.sample_rate = sample_rate
        self.channels = channels
        self.extradata = extradata
        self._packets: list[tuple[int, int, int, bytes]] = []
        self._starts: list[int] = []  # pts of each packet, for bisect
        self._done = False
        self._error: BaseException | None = None
        self._changed = threading.Condition()
        self.expected_bytes = 0  # what the whole track will weigh, roughly (for caches)

    @property
    def time_base(self) -> Fraction:
        return Fraction(1, self.sample_rate)

    @property
    def done(self) -> bool:
        return self._done

    def add(self, pts: int, dts: int, duration: int, data: bytes) -> None:
        with self._changed:
            self._packets.append((pts, dts, duration, data))
            self._starts.append(pts)
            self._changed.notify_all()

    def finish(self, error: BaseException | None = None) -> None:
        with self._changed:
            self._done, self._error = True, error
            self._changed.notify_all()

    def packets_between(self, start: Fraction | None, end: Fraction | None, wait: float) -> list[Any]:
        """``av.Packet`` s whose PTS (seconds) is in [start, end) (None: open), once the encode
        has passed ``end`` (blocking up to ``wait`` seconds; then StillEncoding)."""
        with self._changed:
            reached = self._changed.wait_for(lambda: self._done or self._past(end), wait)
            if self._error is not None:
                raise MediaError(f"re-encoding the audio to AAC failed: {self._error}")
            if not reached:
                at = float(self._starts[-1] * self.time_base) if self._starts else 0.0
                raise StillEncoding(f"the audio is still being re-encoded to AAC ({at:.0f} s done so far)")
            first = 0 if start is None else bisect.bisect_left(self._starts, start / self.time_base)
            last = (
                len(self._starts) if end is None else bisect.bisect_left(self._starts, end / self.time_base)
            )
            chosen = self._packets[first:last]
        out = []
        for pts, dts, duration, data in chosen:
            packet = av.Packet(data)
            packet.pts, packet.dts, packet.time_base = pts, dts, self.time_base
            packet.duration = duration
            packet.is_keyframe = True
            out.append(packet)
        return out

    def _past(self, end: Fraction | None) -> bool:
        return end is not None and bool(self._starts) and self._starts[-1] * self.time_base >= end


def settings(info: MediaInfo, index: int) -> EncodedAudio:
    """The AAC stream track ``index`` becomes, without its packets (enough for an init segment)."""
    track = transcoded_track(info.track(index), "aac")
    return EncodedAudio(index, track.sample_rate or 48000, track.channels or 2, track.extradata)


def start_encoding(path: str | os.PathLike[str], info: MediaInfo, index: int) -> EncodedAudio:
    """Begin encoding track ``index`` of ``path`` to AAC in a thread; returns at once."""
    audio = settings(info, index)
    seconds = info.track(index).duration or info.duration or 0
    audio.expected_bytes = int(seconds * BYTES_PER_SECOND) + 4096

    def run() -> None:
        error: BaseException | None = None
        with _turns:
            try:
                with TranscodingReader(path, info, [index], {index: "aac"}) as reader:
                    while (au := reader.read()) is not None:
                        audio.add(au.pts, au.dts, au.duration, au.data)
            except BaseException as exc:  # reported to every segment that asks
                error = exc
        audio.finish(error)

    threading.Thread(target=run, name=f"streamd-aac-{index}", daemon=True).start()
    return audio


def add_aac_stream(output: Any, audio: EncodedAudio) -> Any:
    """An output stream for ``audio``'s packets, from a template that is never opened."""
    scratch: Any = av.open(io.BytesIO(), "w", format="mp4")
    try:
        stream = output.add_stream_from_template(scratch.add_stream("aac"))
    finally:
        scratch.close()
    context = stream.codec_context
    context.sample_rate = audio.sample_rate
    context.layout = {1: "mono", 2: "stereo", 6: "5.1"}.get(audio.channels, "stereo")
    context.extradata = audio.extradata
    context.time_base = audio.time_base
    stream.time_base = audio.time_base
    return stream
