"""Converting one chunk of a file for WebRTC (PyAV; blocking: run it in a worker thread).

Video: read from the chunk's keyframe and decoded with a fresh decoder; libx264 encodes the
pictures whose PTS lies in [the chunk's keyframe, the next chunk's keyframe), so every picture of
the file is encoded by exactly one chunk and each chunk starts with an IDR. The bounds are the PTS
of those keyframes as read (the sample index gives their DTS; with B-frames its PTS guess can be
off), so two neighbours agree on their border. Pictures shown before a keyframe but decoded after
it (open GOPs) still belong to the chunk before: it decodes on past the next keyframe until a
picture is shown after it.

Audio: Opus frame ``j`` covers file time [j/50, (j+1)/50) s, and chunk n holds the frames that
start in its time span. Each chunk decodes its source from ``PREROLL`` earlier (a decoder needs
the frames before: AAC's overlap, MP3's bit reservoir), resamples to 48 kHz, and feeds the Opus
encoder ``WARMUP`` frames before its first, its input moved ``OPUS_PRE_SKIP`` samples early so
that the encoder's delay puts each packet exactly on its frame; the warm-up packets are dropped.
The Opus stream a viewer gets is thus continuous across chunks (no gap, no overlap).

Everything else goes as it is in the file. A file that cannot be read on (truncated, damaged)
ends with the chunk that found it: what was read is kept and the chunk is marked final.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np

from media.access_unit import AccessUnit
from media.errors import MediaError
from media.reader import MediaReader
from media.track import AacConfig, MediaInfo, Track
from media.transcode import OPUS_PRE_SKIP, encoder_format
from media.video_transcode import VideoToH264
from streamd.webrtc.file_chunks import Chunk, ChunkPlan

log = logging.getLogger(__name__)

OPUS_RATE = 48000
OPUS_FRAME = 960  # 20 ms
FRAMES_PER_SECOND = OPUS_RATE // OPUS_FRAME
WARMUP = 3  # Opus frames encoded before a chunk's first and dropped
PREROLL = Fraction(1, 5)  # seconds of source audio decoded before what a chunk needs
SEEK_MARGIN = Fraction(1, 2)  # seconds: seek this much before a chunk's keyframe (index PTS guesses)
READ_PAST = Fraction(1)  # seconds read past a chunk's end for out-of-order and late units
RESYNC = Fraction(3, 100)  # decoded audio this far from where its timestamp says: placed anew
BIT_RATE = 128_000
FAILURES = (MediaError, av.FFmpegError, EOFError, OSError, ValueError)


@dataclass(frozen=True)
class ChunkJob:
    """One file and what each of the viewer's tracks becomes: "h264", "opus" or "copy"."""

    path: Path
    source: MediaInfo
    tracks: tuple[tuple[int, str], ...]

    @property
    def identity(self) -> tuple[str, int, int, tuple[tuple[int, str], ...]]:
        """What the converted chunks depend on (a changed file makes other chunks)."""
        return (str(self.path), self.source.mtime_ns, self.source.size, self.tracks)


def convert(job: ChunkJob, plan: ChunkPlan, n: int) -> Chunk:
    """Chunk ``n`` of ``job``'s file, converted."""
    copied = [i for i, what in job.tracks if what != "opus"]
    start, end = plan.start(n), plan.end(n)
    first: Fraction | None = start.seconds if start is not None else None
    last: Fraction | None = end.seconds if end is not None else None
    units: list[AccessUnit] = []
    starts: list[Fraction] = []
    final = end is None
    if copied:
        main = _MainTracks(job, plan, n, copied)
        main.run()
        units, starts, first, last = main.units, main.starts, main.first, main.last
        final = final or main.broken
    for index, what in job.tracks:
        if what == "opus":
            audio, broken = _opus(job, index, first, None if final else last)
            units += audio
            final = final or broken
    time_bases = {t.index: t.time_base for t in job.source.tracks}
    time_bases.update({i: Fraction(1, OPUS_RATE) for i, what in job.tracks if what == "opus"})
    units.sort(key=lambda u: u.dts * time_bases[u.stream_index])
    if not starts:  # audio only: any frame of the first track
        ref = job.tracks[0][0]
        starts = [u.pts * time_bases[ref] for u in units if u.stream_index == ref]
    return Chunk.of(n, units, starts, final)


class _MainTracks:
    """The chunk's video (converted or not) and the tracks copied as they are, from one reader."""

    def __init__(self, job: ChunkJob, plan: ChunkPlan, n: int, indices: list[int]) -> None:
        self.job, self.plan, self.n, self.indices = job, plan, n, indices
        self.units: list[AccessUnit] = []
        self.starts: list[Fraction] = []
        start, end = plan.start(n), plan.end(n)
        self.first: Fraction | None = None  # this chunk's keyframe PTS, once read
        self.last: Fraction | None = None  # the next chunk's keyframe PTS, once read
        self.broken = False
        self.ref = plan.reference if plan.reference in indices else None
        self._start, self._end = start, end
        self._time_bases = {i: job.source.track(i).time_base for i in indices}

    def _stamp(self, au: AccessUnit) -> int:
        return au.dts if self.plan.by == "dts" else au.pts

    def _is_cut(self, au: AccessUnit, point: Any) -> bool:
        return au.stream_index == self.ref and au.keyframe and self._stamp(au) >= point.ticks

    def run(self) -> None:
        job = self.job
        converters = {i: VideoToH264(job.source.track(i)) for i, what in job.tracks if what == "h264"}
        reader = MediaReader(job.path, job.source, self.indices)
        copied: list[AccessUnit] = []
        stopped: set[int] = set()  # converted tracks fed all they need
        started = self._start is None or self.ref is None
        if self.ref is None and self._start is not None:
            self.first = self._start.seconds
        if self._end is not None and self.ref is None:
            self.last = self._end.seconds
        try:
            if self._start is not None:
                reader.seek(max(Fraction(0), self._start.seconds - SEEK_MARGIN))
            while True:
                try:
                    au = reader.read()
                except FAILURES as exc:
                    self._broke(exc)
                    break
                if au is None:
                    break
                tb = self._time_bases[au.stream_index]
                if not started:
                    if not self._is_cut(au, self._start):
                        continue
                    started, self.first = True, au.pts * tb
                    for converter in converters.values():
                        converter.from_pts = round(self.first / converter.source.time_base)
                if self._end is not None and self.last is None and self._is_cut(au, self._end):
                    self.last = au.pts * tb
                    for converter in converters.values():
                        converter.until_pts = round(self.last / converter.source.time_base)
                    next_keyframe = au
                else:
                    next_keyframe = None
                if self.last is not None and au.dts * tb > self.last + READ_PAST:
                    break
                converter = converters.get(au.stream_index)
                if converter is None:
                    copied.append(au)
                    continue
                if au.stream_index in stopped:
                    continue
                if self.last is not None and next_keyframe is None and au.pts * tb >= self.last:
                    stopped.add(au.stream_index)  # shown after the next keyframe: the next chunk's
                    continue
                self.units += converter.feed(au)
            for converter in converters.values():
                self.units += converter.flush()
        except FAILURES as exc:
            self._broke(exc)
        finally:
            reader.close()
        self.units += [u for u in copied if self._inside(u.pts * self._time_bases[u.stream_index])]
        video = next((i for i, what in job.tracks if job.source.track(i).kind == "video"), None)
        if video is not None:
            tb = self._time_bases[video]
            self.starts = [u.pts * tb for u in self.units if u.stream_index == video and u.keyframe]

    def _inside(self, seconds: Fraction) -> bool:
        return (self.first is None or seconds >= self.first) and (self.last is None or seconds < self.last)

    def _broke(self, exc: BaseException) -> None:
        self.broken = True
        log.warning("%s: cannot read on after chunk %d's start (%s); its WebRTC viewers end there",
                    self.job.path, self.n, exc)  # fmt: skip


def _decodable(track: Track) -> Track:
    if track.codec == "aac" and not track.extradata and isinstance(track.config, AacConfig):
        config = track.config
        return replace(track, extradata=config.audio_specific_config, sample_rate=config.sample_rate)
    return track


def _opus(
    job: ChunkJob, index: int, first: Fraction | None, last: Fraction | None
) -> tuple[list[AccessUnit], bool]:
    """Opus frames of ``index`` starting in [first, last) of file time (None: the file's start or
    end), and whether the source broke off."""
    source = _decodable(job.source.track(index))
    _, layout = encoder_format(source.sample_rate, source.channels, "opus")
    channels = 1 if layout == "mono" else 2
    file_start = min(
        (t.start_time for t in job.source.tracks if t.start_time is not None), default=Fraction(0)
    )
    j0 = math.ceil(first * FRAMES_PER_SECOND) if first is not None else None
    j1 = math.ceil(last * FRAMES_PER_SECOND) if last is not None else None
    pieces: list[tuple[int, np.ndarray]] = []  # (48 kHz sample position, interleaved s16)
    broken = False
    reader = MediaReader(job.path, job.source, [index])
    try:
        decoder: Any = av.CodecContext.create(source.codec, "r")
        if source.extradata:
            decoder.extradata = source.extradata
        if source.sample_rate:
            decoder.sample_rate = source.sample_rate
        resampler = av.AudioResampler(format="s16", layout=layout, rate=OPUS_RATE)
        if j0 is not None:
            begin = Fraction((j0 - WARMUP) * OPUS_FRAME + OPUS_PRE_SKIP, OPUS_RATE) - PREROLL
            if begin > file_start:
                reader.seek(begin)
        need = None if j1 is None else j1 * OPUS_FRAME + OPUS_PRE_SKIP  # input sample needed up to
        position: int | None = None  # where the resampler's next output sample goes
        expected: Fraction | None = None  # source time its next input sample has
        while True:
            try:
                au = reader.read()
            except FAILURES as exc:
                log.warning("%s: audio track %d cannot be read on (%s)", job.path, index, exc)
                broken = True
                break
            if au is None:
                break
            at = au.pts * source.time_base
            if need is not None and position is not None and at * OPUS_RATE > need + OPUS_RATE // 10:
                break
            packet = av.Packet(au.data)
            packet.pts, packet.dts, packet.time_base = au.pts, au.dts, source.time_base
            try:
                frames = decoder.decode(packet)
            except (av.FFmpegError, ValueError):
                continue  # a damaged packet: its samples are missing, the next placed anew
            for frame in frames:
                stamp = at if frame.pts is None else frame.pts * source.time_base
                if position is None or expected is None or abs(stamp - expected) > RESYNC:
                    position = round(stamp * OPUS_RATE)  # what the resampler held is dropped
                    resampler = av.AudioResampler(format="s16", layout=layout, rate=OPUS_RATE)
                expected = stamp + Fraction(
                    frame.samples, frame.sample_rate or source.sample_rate or OPUS_RATE
                )
                frame.pts = None
                for out in resampler.resample(frame):
                    data = out.to_ndarray().reshape(-1)
                    pieces.append((position, data))
                    position += out.samples
        if position is not None:
            for out in resampler.resample(None):
                pieces.append((position, out.to_ndarray().reshape(-1)))
                position += out.samples
    except FAILURES as exc:
        log.warning("%s: audio track %d cannot be converted (%s)", job.path, index, exc)
        broken = True
    finally:
        reader.close()
    if not pieces:
        return [], broken
    if j0 is None:
        j0 = math.ceil(max(Fraction(pieces[0][0], OPUS_RATE), file_start) * FRAMES_PER_SECOND)
    end = max(at + len(data) // channels for at, data in pieces)
    stop = math.ceil(end / OPUS_FRAME)  # frames starting before the decoded audio ends
    j1 = stop if j1 is None else min(j1, stop)
    return _encode(pieces, channels, layout, j0, j1, index), broken


def _encode(
    pieces: list[tuple[int, np.ndarray]], channels: int, layout: str, j0: int, j1: int, index: int
) -> list[AccessUnit]:
    """Opus frames j0 .. j1 - 1 of the decoded audio ``pieces``."""
    if j1 <= j0:
        return []
    origin = (j0 - WARMUP) * OPUS_FRAME + OPUS_PRE_SKIP  # input sample of the first frame fed
    count = j1 - j0 + WARMUP
    pcm = np.zeros(count * OPUS_FRAME * channels, dtype=np.int16)
    for at, data in pieces:
        lo = max(at, origin)
        hi = min(at + len(data) // channels, origin + count * OPUS_FRAME)
        if hi > lo:
            pcm[(lo - origin) * channels : (hi - origin) * channels] = data[
                (lo - at) * channels : (hi - at) * channels
            ]
    encoder: Any = av.CodecContext.create("libopus", "w")
    encoder.sample_rate, encoder.layout, encoder.format = OPUS_RATE, layout, "s16"
    encoder.time_base = Fraction(1, OPUS_RATE)
    encoder.bit_rate = BIT_RATE
    encoder.open()
    out: list[AccessUnit] = []
    size = OPUS_FRAME * channels
    for k in range(count):
        frame = av.AudioFrame.from_ndarray(
            pcm[k * size : (k + 1) * size].reshape(1, -1), format="s16", layout=layout
        )
        frame.sample_rate, frame.pts, frame.time_base = (
            OPUS_RATE,
            origin + k * OPUS_FRAME,
            Fraction(1, OPUS_RATE),
        )
        for packet in encoder.encode(frame):
            pts = packet.pts
            if pts is not None and j0 * OPUS_FRAME <= pts < j1 * OPUS_FRAME:
                out.append(AccessUnit(index, pts, pts, True, bytes(packet), duration=OPUS_FRAME))
    return out
