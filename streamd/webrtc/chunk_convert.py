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

Everything else goes as it is in the file. Units are handed out (``emit``) as they are made, in
decode-time order, so viewers start before the chunk is done. A file that cannot be read on
(truncated, damaged) ends with the chunk that found it: what was read is kept, the chunk is final.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av

from media.access_unit import AccessUnit
from media.errors import MediaError
from media.reader import MediaReader
from media.track import MediaInfo
from media.transcode import OPUS_PRE_SKIP, encoder_format
from media.video_transcode import VideoToH264
from streamd.webrtc.convert import decodable
from streamd.webrtc.file_chunks import ChunkPlan

log = logging.getLogger(__name__)

OPUS_RATE = 48000
OPUS_FRAME = 960  # 20 ms
FRAMES_PER_SECOND = OPUS_RATE // OPUS_FRAME
WARMUP = 3  # Opus frames encoded before a chunk's first and dropped
PREROLL = Fraction(1, 5)  # seconds of source audio decoded before what a chunk needs
SEEK_MARGIN = Fraction(1, 2)  # seconds: seek this much before a chunk's keyframe (index PTS guesses)
READ_PAST = Fraction(1)  # seconds read past a chunk's end for out-of-order and late units
AUDIO_STEP = Fraction(1, 4)  # audio-only chunks are handed out this many seconds at a time
RESYNC = Fraction(3, 100)  # decoded audio this far from where its timestamp says: placed anew
BIT_RATE = 128_000
FAILURES = (MediaError, av.FFmpegError, EOFError, OSError, ValueError)

Emit = Callable[[list[AccessUnit], list[Fraction]], None]  # units (decode-time order), keyframe times


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


def convert(job: ChunkJob, plan: ChunkPlan, n: int, emit: Emit) -> bool:
    """Convert chunk ``n`` of ``job``, handing its units to ``emit`` as they are made; returns
    whether it is the file's last (its end, or where the file cannot be read on)."""
    return _Conversion(job, plan, n, emit).run()


class _Conversion:
    def __init__(self, job: ChunkJob, plan: ChunkPlan, n: int, emit: Emit) -> None:
        self.job, self.plan, self.n, self.emit = job, plan, n, emit
        self.copied = [i for i, what in job.tracks if what != "opus"]
        self.time_bases = {t.index: t.time_base for t in job.source.tracks}
        self.time_bases.update({i: Fraction(1, OPUS_RATE) for i, what in job.tracks if what == "opus"})
        start, end = plan.start(n), plan.end(n)
        self._start, self._end = start, end
        self.ref = plan.reference if plan.reference in self.copied else None
        # this chunk's keyframe PTS and the next one's, once read (else the index's, or None: the file's ends)
        self.first: Fraction | None = start.seconds if start is not None and self.ref is None else None
        self.last: Fraction | None = end.seconds if end is not None and self.ref is None else None
        self.broken = False
        self.audio: list[_Opus] = []
        self._pending: list[AccessUnit] = []  # copied units not yet known to be inside the chunk
        self._video: list[AccessUnit] = []  # converted pictures not yet handed out
        self._upto: Fraction | None = None  # handed out: everything before this time

    def run(self) -> bool:
        try:
            if self.copied:
                self._main()
            else:
                self._audio_only()
        finally:
            for audio in self.audio:
                audio.close()
        return self._end is None or self.broken

    # --- video and copied tracks, from one reader ----------------------------------------------

    def _stamp(self, au: AccessUnit) -> int:
        return au.dts if self.plan.by == "dts" else au.pts

    def _is_cut(self, au: AccessUnit, point: Any) -> bool:
        return au.stream_index == self.ref and au.keyframe and self._stamp(au) >= point.ticks

    def _main(self) -> None:
        job = self.job
        converters = {i: VideoToH264(job.source.track(i)) for i, what in job.tracks if what == "h264"}
        reader = MediaReader(job.path, job.source, self.copied)
        stopped: set[int] = set()  # converted tracks fed all they need
        started = self._start is None or self.ref is None
        shown: Fraction | None = None  # the latest PTS of the reference track before the next keyframe
        if started:
            self._open_audio()
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
                tb = self.time_bases[au.stream_index]
                if not started:
                    if not self._is_cut(au, self._start):
                        continue
                    started, self.first = True, au.pts * tb
                    for converter in converters.values():
                        converter.from_pts = round(self.first / converter.source.time_base)
                    self._open_audio()
                next_keyframe = self._end is not None and self.last is None and self._is_cut(au, self._end)
                if next_keyframe:
                    self.last = au.pts * tb
                    for converter in converters.values():
                        converter.until_pts = round(self.last / converter.source.time_base)
                elif au.stream_index == self.ref and self.last is None:
                    shown = au.pts * tb if shown is None else max(shown, au.pts * tb)
                if self.last is not None and au.dts * tb > self.last + READ_PAST:
                    break
                if converters and stopped == set(converters) == set(self.copied):
                    break  # every track is converted and has all it needs
                converter = converters.get(au.stream_index)
                if converter is None:
                    self._pending.append(au)
                elif au.stream_index not in stopped:
                    if self.last is not None and not next_keyframe and au.pts * tb >= self.last:
                        stopped.add(au.stream_index)  # shown after the next keyframe: the next chunk's
                        continue
                    self._video += converter.feed(au)
                self._hand_out(converters, shown)
            for converter in converters.values():
                self._video += converter.flush()
        except FAILURES as exc:
            self._broke(exc)
        finally:
            reader.close()
        if not started:
            self._broke(MediaError("the chunk's keyframe is not where the index says"))
        elif self._end is not None and self.last is None and not self.broken:
            self._broke(MediaError("the file ends before the next chunk's keyframe"))
        if self.broken:
            self.last = self._upto if self._upto is not None else self.first
        self._hand_out(converters, None, done=True)

    def _hand_out(
        self, converters: dict[int, VideoToH264], shown: Fraction | None, done: bool = False
    ) -> None:
        """Emit what is known to be inside the chunk and before anything still to come: pictures
        converted, then copied units and Opus frames up to the latest picture (converted video)
        or the reference track's latest PTS (copied video)."""
        if done:
            upto = self.last
        elif converters:
            if not self._video:
                return
            video = self._video[-1]
            upto = video.pts * self.time_bases[video.stream_index]
        else:
            upto = shown if self.last is None else min(shown or self.last, self.last)
            if upto is None or (self._upto is not None and upto <= self._upto):
                return
        units, self._video = self._video, []
        keep: list[AccessUnit] = []
        for au in self._pending:
            at = au.pts * self.time_bases[au.stream_index]
            if (upto is None or at < upto) or (done and self._inside(at)):
                if self._inside(at):
                    units.append(au)
            else:
                keep.append(au)
        self._pending = keep if not done else []
        for audio in self.audio:
            units += audio.frames(upto, final=done)
        self._upto = upto
        self._send(units)

    def _inside(self, seconds: Fraction) -> bool:
        return (self.first is None or seconds >= self.first) and (self.last is None or seconds < self.last)

    def _broke(self, exc: BaseException) -> None:
        self.broken = True
        log.warning("%s: cannot read on after chunk %d's start (%s); its WebRTC viewers end there",
                    self.job.path, self.n, exc)  # fmt: skip

    # --- audio ---------------------------------------------------------------------------------

    def _open_audio(self) -> None:
        for index, what in self.job.tracks:
            if what == "opus":
                self.audio.append(_Opus(self.job, index, self.first))

    def _audio_only(self) -> None:
        self._open_audio()
        at = self.first if self.first is not None else Fraction(0)
        while self.last is None or at < self.last:
            at += AUDIO_STEP
            units = [
                u
                for audio in self.audio
                for u in audio.frames(at if self.last is None else min(at, self.last))
            ]
            self._send(units)
            if all(audio.exhausted for audio in self.audio):
                break
        self._send([u for audio in self.audio for u in audio.frames(self.last, final=True)])
        self.broken = any(audio.broken for audio in self.audio)

    def _send(self, units: list[AccessUnit]) -> None:
        if not units:
            return
        units.sort(key=lambda u: u.dts * self.time_bases[u.stream_index])
        video = next((i for i, what in self.job.tracks if self.job.source.track(i).kind == "video"), None)
        if video is not None:
            tb = self.time_bases[video]
            starts = [u.pts * tb for u in units if u.stream_index == video and u.keyframe]
        else:  # audio only: any frame of the first track
            ref = self.job.tracks[0][0]
            starts = [u.pts * self.time_bases[ref] for u in units if u.stream_index == ref]
        self.emit(units, starts)


class _Opus:
    """One audio track of a chunk as Opus frames on the file's 20 ms grid, made as asked for."""

    def __init__(self, job: ChunkJob, index: int, first: Fraction | None) -> None:
        import numpy as np  # here, not at the top: only audio conversions need it (a server start skips it)

        self.job, self.index = job, index
        self.source = source = decodable(job.source.track(index))
        _, self.layout = encoder_format(source.sample_rate, source.channels, "opus")
        self.channels = 1 if self.layout == "mono" else 2
        starts = [t.start_time for t in job.source.tracks if t.start_time is not None]
        self.file_start = min(starts, default=Fraction(0))
        self.j0: int | None = None  # the chunk's first frame (from the first audio, for chunk 0)
        self.fed = 0  # frames given to the encoder, warm-up included
        self.buffer = np.zeros(0, dtype=np.int16)  # decoded 48 kHz samples, interleaved
        self.buffer_at = 0  # the sample position of buffer[0]
        self.position: int | None = None  # where the resampler's next output goes
        self.written = 0  # the end of what was decoded (sample position)
        self.expected: Fraction | None = None  # the source time of the next decoded sample
        self.eof = False
        self.broken = False
        self.exhausted = False  # every frame the decoded audio covers is handed out
        self.reader = MediaReader(job.path, job.source, [index])
        self.decoder: Any = av.CodecContext.create(source.codec, "r")
        if source.extradata:
            self.decoder.extradata = source.extradata
        if source.sample_rate:
            self.decoder.sample_rate = source.sample_rate
        self.resampler = self._resampler()
        self.encoder: Any = None
        if first is not None:
            self._begin(math.ceil(first * FRAMES_PER_SECOND))
            begin = Fraction(self.origin, OPUS_RATE) - PREROLL
            if begin > self.file_start:
                self.reader.seek(begin)

    def _resampler(self) -> Any:
        return av.AudioResampler(format="s16", layout=self.layout, rate=OPUS_RATE)

    def _begin(self, j0: int) -> None:
        self.j0 = j0
        self.origin = (j0 - WARMUP) * OPUS_FRAME + OPUS_PRE_SKIP  # input sample of the first frame fed
        self.buffer_at = self.origin

    def close(self) -> None:
        self.reader.close()

    def frames(self, until: Fraction | None, final: bool = False) -> list[AccessUnit]:
        """The frames not handed out yet that start before ``until`` (None: the audio's end);
        ``final``: the chunk ends at ``until``."""
        if self.exhausted:
            return []
        limit = None if until is None else math.ceil(until * FRAMES_PER_SECOND)
        out: list[AccessUnit] = []
        while True:
            if self.j0 is None:
                if not self._decode():
                    self.exhausted = True  # no audio at all
                    break
                continue
            j = self.j0 - WARMUP + self.fed  # the frame the next input makes
            if limit is not None and j >= limit:
                break
            need = self.origin + (self.fed + 1) * OPUS_FRAME  # input samples it takes
            while not self.eof and self.written < need:
                self._decode()
            if self.eof and j * OPUS_FRAME >= self.written and j >= self.j0:
                self.exhausted = True  # past the decoded audio
                break
            out += self._encode(j)
        if final:
            self.exhausted = True
        return out

    def _encode(self, j: int) -> list[AccessUnit]:
        import numpy as np

        if self.encoder is None:
            encoder: Any = av.CodecContext.create("libopus", "w")
            encoder.sample_rate, encoder.layout, encoder.format = OPUS_RATE, self.layout, "s16"
            encoder.time_base = Fraction(1, OPUS_RATE)
            encoder.bit_rate = BIT_RATE
            encoder.open()
            self.encoder = encoder
        start = self.origin + self.fed * OPUS_FRAME
        size = OPUS_FRAME * self.channels
        pcm = np.zeros(size, dtype=np.int16)
        lo = max(start, self.buffer_at)
        hi = min(start + OPUS_FRAME, self.buffer_at + len(self.buffer) // self.channels)
        if hi > lo:
            at = (lo - self.buffer_at) * self.channels
            pcm[(lo - start) * self.channels : (hi - start) * self.channels] = self.buffer[
                at : at + (hi - lo) * self.channels
            ]
        drop = max(0, start + OPUS_FRAME - self.buffer_at)  # samples no later frame needs
        self.buffer, self.buffer_at = self.buffer[drop * self.channels :], self.buffer_at + drop
        self.fed += 1
        frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout=self.layout)
        frame.sample_rate, frame.pts, frame.time_base = OPUS_RATE, start, Fraction(1, OPUS_RATE)
        assert self.j0 is not None
        return [
            AccessUnit(self.index, p.pts, p.pts, True, bytes(p), duration=OPUS_FRAME)
            for p in self.encoder.encode(frame)
            if p.pts is not None and p.pts >= self.j0 * OPUS_FRAME
        ]

    def _decode(self) -> bool:
        """Decode one more source unit into the buffer; False at the end."""
        if self.eof:
            return False
        try:
            au = self.reader.read()
        except FAILURES as exc:
            log.warning("%s: audio track %d cannot be read on (%s)", self.job.path, self.index, exc)
            au, self.broken = None, True
        if au is None:
            self.eof = True
            if self.position is not None:
                for out in self.resampler.resample(None):
                    self._place(out)
            return False
        tb = self.source.time_base
        packet = av.Packet(au.data)
        packet.pts, packet.dts, packet.time_base = au.pts, au.dts, tb
        try:
            frames = self.decoder.decode(packet)
        except (av.FFmpegError, ValueError):
            return True  # a damaged packet: its samples are missing, the next placed anew
        for frame in frames:
            stamp = au.pts * tb if frame.pts is None else frame.pts * tb
            if self.position is None or self.expected is None or abs(stamp - self.expected) > RESYNC:
                self.position = round(stamp * OPUS_RATE)  # what the resampler held is dropped
                self.resampler = self._resampler()
                if self.j0 is None:
                    self._begin(math.ceil(max(stamp, self.file_start) * FRAMES_PER_SECOND))
            self.expected = stamp + Fraction(
                frame.samples, frame.sample_rate or self.source.sample_rate or OPUS_RATE
            )
            frame.pts = None
            for out in self.resampler.resample(frame):
                self._place(out)
        return True

    def _place(self, out: Any) -> None:
        import numpy as np

        assert self.position is not None
        data = out.to_ndarray().reshape(-1)
        at, count = self.position, out.samples
        self.position += count
        end = at + count
        self.written = max(self.written, end)
        if end <= self.buffer_at:
            return
        if at < self.buffer_at:
            data, at = data[(self.buffer_at - at) * self.channels :], self.buffer_at
        have = self.buffer_at + len(self.buffer) // self.channels
        if end > have:
            self.buffer = np.concatenate(
                [self.buffer, np.zeros((end - have) * self.channels, dtype=np.int16)]
            )
        offset = (at - self.buffer_at) * self.channels
        self.buffer[offset : offset + len(data)] = data
