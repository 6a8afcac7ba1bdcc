"""A whole file as one MPEG transport stream, cut into timed chunks of 188-byte packets.

Two sources, one output: a ``.ts`` file is read as it is (its own bytes, paced by its PCRs);
any other container is remuxed to MPEG-TS by PyAV on the fly, without re-encoding, so tracks
whose codecs have no RTP payload format of their own (MPEG-4 Part 2, Vorbis, FLAC, DTS, ...)
still reach the player inside the TS. Offers the same read/seek/close interface as
``MediaReader`` so the pacing loop does not care which it has.
"""

from __future__ import annotations

import contextlib
import os
from collections import deque
from fractions import Fraction
from typing import Any

import av

from media.access_unit import AccessUnit
from media.errors import MediaError
from media.mpegts import TS_PACKET, TsTimer
from media.probe import open_container
from media.track import MediaInfo, Track

TICKS = 90000
TIME_BASE = Fraction(1, TICKS)
READ_BLOCK = 64 * 1024
IN_BAND_HEADERS = {"mpeg4", "mpeg1video", "mpeg2video"}


def is_transport_stream(info: MediaInfo) -> bool:
    return "mpegts" in info.format_name.split(",")


def ts_track(info: MediaInfo) -> Track:
    """The one track an MPEG-TS presentation has: the whole stream, in the 90 kHz clock."""
    return Track(
        index=0,
        kind="video",
        codec="mpegts",
        time_base=TIME_BASE,
        duration=info.duration,
        start_time=Fraction(0),
        notes=tuple(f"carries track {t.index} ({t.kind} {t.codec})" for t in info.tracks),
    )


class TransportStreamReader:
    """Chunks of 7 TS packets with times from the PCRs, starting at 0. Blocking: use a thread."""

    def __init__(self, path: str | os.PathLike[str], info: MediaInfo, *, loop: bool = False) -> None:
        self._path = str(path)
        self._info = info
        self._loop = loop
        self._passthrough = is_transport_stream(info)
        self._out: deque[AccessUnit] = deque()
        self._offset = 0  # ticks added to the current pass's times
        self._last_time = 0
        self._file: Any = None
        self._input: Any = None
        self._output: Any = None
        self._sink = bytearray()
        self._packets: Any = None
        self._timer = TsTimer()
        self._file_first_pcr: int | None = None
        self._eof = False
        self._start()

    # -- the reader interface ----------------------------------------------------------------

    def read(self) -> AccessUnit | None:
        while not self._out:
            if self._eof:
                if not self._loop:
                    return None
                self._offset = self._last_time + self._chunk_ticks()
                self._restart()
            self._pump()
        return self._out.popleft()

    def seek(self, seconds: Fraction) -> Fraction:
        """Start again near ``seconds``; returns the time of the first chunk that follows."""
        self._close_sources()
        self._out.clear()
        self._eof = False
        self._timer = TsTimer()
        if self._passthrough:
            self._open_file()
            self._offset = 0
            if seconds > 0:
                position, actual = self._keyframe_position(seconds)
                self._file.seek(position // TS_PACKET * TS_PACKET)
                first = self.read()
                if first is None:
                    return actual
                self._out.appendleft(first)
                return actual
        else:
            self._open_remux(seconds)
        first = self.read()
        if first is None:
            return seconds
        self._out.appendleft(first)
        return first.pts * TIME_BASE

    def _keyframe_position(self, seconds: Fraction) -> tuple[int, Fraction]:
        """Byte offset and time (from the file start) of the video keyframe at or before ``seconds``.

        PyAV's demuxer knows where each packet starts in the file; the TS is then sent from there,
        so the player's first picture is that keyframe.
        """
        container = open_container(self._path)
        try:
            video = next((s for s in container.streams if s.type == "video"), None)
            stream = video or container.streams[0]
            start = stream.start_time or 0
            target = int(seconds / stream.time_base) + start
            # FFmpeg's TS seek can land past the target: back off until a keyframe <= target is seen
            for backoff in (0, 1, 5, 30, None):
                aim = start if backoff is None else max(start, target - int(backoff / stream.time_base))
                container.seek(aim, backward=True, any_frame=False, stream=stream)
                best: tuple[int, int] | None = None
                for packet in container.demux(stream):
                    if packet.pts is None or packet.pos is None or packet.pos < 0:
                        continue
                    if packet.pts > target and best is not None:
                        break
                    if (video is None or packet.is_keyframe) and packet.pts <= target:
                        best = (packet.pos, packet.pts)
                    if packet.pts > target + int(30 / stream.time_base):
                        break
                if best is not None:
                    return best[0], max(Fraction(0), (best[1] - start) * stream.time_base)
        except av.FFmpegError as exc:
            raise MediaError(f"{self._path}: cannot seek: {exc}") from exc
        finally:
            container.close()
        return 0, Fraction(0)

    def close(self) -> None:
        self._close_sources()

    def __enter__(self) -> TransportStreamReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- sources ------------------------------------------------------------------------------

    def _start(self) -> None:
        if self._passthrough:
            self._open_file()
        else:
            self._open_remux(Fraction(0))

    def _restart(self) -> None:
        self._close_sources()
        self._eof = False
        self._timer = TsTimer()
        self._start()

    def _open_file(self) -> None:
        try:
            self._file = open(self._path, "rb")  # noqa: SIM115 - closed in close()
        except OSError as exc:
            raise MediaError(f"{self._path}: cannot read ({exc.strerror})") from exc

    def _open_remux(self, start: Fraction) -> None:
        self._input = open_container(self._path)
        self._sink = bytearray()
        self._output = av.open(_Sink(self._sink), mode="w", format="mpegts")
        mapping = {}
        for stream in self._input.streams:
            if stream.type in ("video", "audio", "subtitle"):
                try:
                    mapping[stream.index] = self._output.add_stream_from_template(stream)
                except (ValueError, av.FFmpegError):
                    continue  # a codec TS cannot carry: left out
        if not mapping:
            raise MediaError(f"{self._path}: nothing in it can be carried in MPEG-TS")
        self._mapping = mapping
        # codecs whose headers sit in the container's extradata (MPEG-4 Part 2 in MKV/MP4) need
        # them in-band in a TS, before each keyframe, or no decoder can start
        self._filters = {
            i: av.bitstream.BitStreamFilterContext("dump_extra=freq=keyframe", self._input.streams[i])
            for i in mapping
            if self._input.streams[i].codec_context.name in IN_BAND_HEADERS
        }
        self._offset = 0
        if start > 0:
            self._input.seek(int(start * av.time_base), backward=True, any_frame=False)
            self._offset = round(start * TICKS)
        self._packets = self._input.demux(*[self._input.streams[i] for i in mapping])

    def _close_sources(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        for name in ("_output", "_input"):
            container = getattr(self, name)
            if container is not None:
                with contextlib.suppress(av.FFmpegError, OSError, ValueError):
                    container.close()
                setattr(self, name, None)

    def _pump(self) -> None:
        """Read one block of TS bytes into timed chunks; at the end, flush and mark EOF."""
        data = self._next_bytes()
        chunks = self._timer.feed(data) if data else self._timer.flush()
        if not data:
            self._eof = True
        if self._timer.first_pcr is not None and self._file_first_pcr is None:
            self._file_first_pcr = self._timer.first_pcr
        base = self._offset
        if self._passthrough and self._file_first_pcr is not None and self._timer.first_pcr is not None:
            base += self._timer.first_pcr - self._file_first_pcr  # after a seek: where we landed
        for ticks, chunk in chunks:
            time = base + ticks
            self._last_time = time
            self._out.append(AccessUnit(0, time, time, True, chunk))

    def _next_bytes(self) -> bytes:
        if self._passthrough:
            return self._file.read(READ_BLOCK) if self._file is not None else b""
        while len(self._sink) < READ_BLOCK and self._output is not None:
            try:
                packet = next(self._packets)
            except StopIteration:
                with contextlib.suppress(av.FFmpegError, ValueError):
                    self._output.close()  # writes the muxer's last bytes into the sink
                self._output = None
                break
            except av.FFmpegError as exc:
                raise MediaError(f"{self._path}: read error while remuxing: {exc}") from exc
            if packet.dts is None and packet.pts is None:
                continue
            index = packet.stream.index
            out_stream = self._mapping[index]
            packets = self._filters[index].filter(packet) if index in self._filters else [packet]
            for p in packets:
                p.stream = out_stream
                try:
                    self._output.mux(p)
                except (av.FFmpegError, ValueError) as exc:
                    raise MediaError(f"{self._path}: cannot remux to MPEG-TS: {exc}") from exc
        data = bytes(self._sink)
        self._sink.clear()
        return data

    def _chunk_ticks(self) -> int:
        return 3600  # 40 ms: the gap between the end of one pass and the start of the next


class _Sink:
    """A write-only file object for PyAV's muxer, collecting bytes into a bytearray."""

    def __init__(self, buffer: bytearray) -> None:
        self.buffer = buffer

    def write(self, data: bytes) -> int:
        self.buffer += data
        return len(data)
