"""One HLS segment of a file, remuxed by PyAV on request: CMAF fragmented MP4 or MPEG-TS.

Packets are copied, never re-encoded. Every segment keeps the file's own timestamps (plus one
constant ``shift`` per file that makes them non-negative), so the ``tfdt`` of each fragment and
the PES timestamps continue exactly where the previous segment ended, and a player that joins
segments sees one stream. The muxers are told not to move timestamps themselves
(``avoid_negative_ts``, no edit list) and to write nothing that changes from run to run
(``bitexact``), so the same segment made twice is the same bytes.

A segment is the reference track's packets in decode order from its start cut point up to the
next one (B-frames stay with their GOP), plus the other tracks' packets whose PTS falls in
[start, end) seconds. The first segment also takes what comes before the first cut, the last
one everything after.
"""

from __future__ import annotations

import io
import itertools
import math
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Literal

import av

from media import aac
from media.audio_track import EncodedAudio, add_aac_stream
from media.errors import MediaError
from media.keyframe_index import CutPoint
from media.probe import open_container

Container = Literal["mp4", "mpegts"]
# fragmented MP4 written whole at the end (frag_custom): one moof + mdat per segment; the
# fragment's decode time is the first packet's DTS (frag_discont without an edit list)
MP4_OPTIONS = {
    "movflags": "frag_custom+empty_moov+default_base_moof+frag_discont",
    "use_editlist": "0",
    "avoid_negative_ts": "disabled",
    "fflags": "+bitexact",
}
# every TS segment marks its streams' first packets as a continuity-counter discontinuity, since
# each starts counting again
TS_OPTIONS = {
    "mpegts_copyts": "1",
    "mpegts_flags": "+initial_discontinuity",
    "avoid_negative_ts": "disabled",
    "fflags": "+bitexact",
}
FRAME_DESCRIBED = frozenset({"ac3", "eac3"})  # MP4 sample entries FFmpeg fills from the first frame
SEEK_MARGINS = (Fraction(0), Fraction(1), Fraction(5), Fraction(30), None)  # None: from the start
ENCODE_WAIT = 10.0  # seconds a segment waits for re-encoded audio to reach its end (then 503)
READ_PAST = Fraction(10)  # seconds read past the end of a track before the others are given up


@dataclass(frozen=True)
class SegmentJob:
    """What to put in one segment (all times in seconds of file time, before ``shift``)."""

    path: str
    streams: tuple[int, ...]  # stream indices written, in this order
    reference: int  # the track the cut points belong to (may be absent from ``streams``)
    by: Literal["dts", "pts"]  # which timestamp the cut points' ticks are
    start: CutPoint | None  # None: from the beginning of the file
    end: CutPoint | None  # None: to its end
    shift: Fraction  # added to every timestamp
    container: Container = "mp4"
    encoded: tuple[EncodedAudio, ...] = ()  # tracks re-encoded once, taken from here, not the file

    @property
    def demuxed(self) -> tuple[int, ...]:
        """The streams read from the file (not re-encoded ones)."""
        return tuple(i for i in self.streams if i not in {a.stream_index for a in self.encoded})


def init_segment(job: SegmentJob) -> bytes:
    """``ftyp`` + ``moov`` for the fragments of ``job`` 's streams (blocking; ``job`` is any
    segment's, the first is cheapest). AC-3 and E-AC-3 sample entries are made from a frame, so
    for them the moov comes from muxing the segment; otherwise from the streams alone."""
    source = open_container(job.path)
    try:
        if _needs_frames(source, job):
            return _boxes(_mux(source, job), {b"ftyp", b"moov"})
        sink = io.BytesIO()
        with av.open(sink, "w", format="mp4", options=dict(MP4_OPTIONS)) as output:  # type: ignore[call-overload]
            _outputs(source, output, job.streams, _adts_configs(job.path, source, job.demuxed), job.encoded)
            output.start_encoding()  # the header, although no packet follows
        return _boxes(sink.getvalue(), {b"ftyp", b"moov"})
    except av.FFmpegError as exc:
        raise MediaError(f"{job.path}: cannot make the init segment ({exc})") from exc
    finally:
        source.close()


def make_segment(job: SegmentJob) -> bytes:
    """The segment's bytes (blocking): ``moof`` + ``mdat`` for MP4 (pair it with the init
    segment), a self-contained MPEG-TS otherwise."""
    source = open_container(job.path)
    try:
        data = _mux(source, job)
        return _boxes(data, {b"moof", b"mdat"}) if job.container == "mp4" else data
    except av.FFmpegError as exc:
        raise MediaError(f"{job.path}: cannot remux the segment ({exc})") from exc
    finally:
        source.close()


def _needs_frames(source: Any, job: SegmentJob) -> bool:
    return any(s.index in job.demuxed and s.codec_context.name in FRAME_DESCRIBED for s in source.streams)


def _mux(source: Any, job: SegmentJob) -> bytes:
    """The whole muxer output for ``job`` (MP4: ftyp, moov, moof, mdat, mfra)."""
    sink = io.BytesIO()
    options = dict(MP4_OPTIONS if job.container == "mp4" else TS_OPTIONS)
    if job.container == "mp4" and _needs_frames(source, job):
        options["movflags"] = options["movflags"].replace("empty_moov", "delay_moov")
    with av.open(sink, "w", format=job.container, options=options) as output:  # type: ignore[call-overload]
        adts = _adts_configs(job.path, source, job.demuxed)
        outputs = _outputs(source, output, job.streams, adts, job.encoded)
        start = job.start.seconds if job.start is not None else None
        end = job.end.seconds if job.end is not None else None
        encoded = [
            (a.stream_index, p) for a in job.encoded for p in a.packets_between(start, end, ENCODE_WAIT)
        ]
        demuxed = ((p.stream.index, p) for p in _packets(source, job)) if job.demuxed else iter(())
        count = 0
        for index, packet in itertools.chain(encoded, demuxed):  # the muxer interleaves them
            if index in adts:
                packet = _without_adts(packet)
            shift = math.ceil(job.shift / packet.time_base)
            packet.pts += shift
            packet.dts += shift
            packet.stream = outputs[index]
            try:
                output.mux(packet)
            except av.InvalidDataError:
                continue  # a packet cut short (a truncated file's last): players skip it too
            count += 1
    if count == 0:
        raise MediaError(f"{job.path}: nothing to put in this segment (damaged or cut short)")
    return sink.getvalue()


def _adts_configs(path: str | os.PathLike[str], source: Any, streams: tuple[int, ...]) -> dict[int, bytes]:
    """AudioSpecificConfigs of AAC tracks whose packets carry ADTS headers (MPEG-TS, .aac),
    from their first header: MP4 wants them in the init segment, before any packet."""
    candidates = [
        s
        for s in source.streams
        if s.index in streams and s.type == "audio" and s.codec_context.name == "aac"
    ]
    if not candidates or source.format.name not in ("mpegts", "aac"):
        return {}
    found: dict[int, bytes] = {}
    peek = open_container(path)
    try:
        wanted = {s.index for s in candidates}
        for count, packet in enumerate(peek.demux([s for s in peek.streams if s.index in wanted])):
            if count > 500 or not wanted:
                break
            index = packet.stream.index
            if index in wanted and packet.size:
                wanted.discard(index)
                data = bytes(packet)
                if aac.looks_like_adts(data):
                    found[index] = aac.audio_specific_config_from_adts(aac.parse_adts_header(data))
    except (av.FFmpegError, MediaError):
        pass
    finally:
        peek.close()
    return found


def _without_adts(packet: Any) -> Any:
    data = bytes(packet)
    if not aac.looks_like_adts(data):
        return packet
    header = aac.parse_adts_header(data)
    bare = av.Packet(data[header.header_length : header.frame_length])
    bare.stream, bare.time_base = packet.stream, packet.time_base
    bare.pts, bare.dts, bare.duration = packet.pts, packet.dts, packet.duration
    bare.is_keyframe = True
    return bare


def _outputs(
    source: Any,
    output: Any,
    streams: tuple[int, ...],
    configs: dict[int, bytes],
    encoded: tuple[EncodedAudio, ...] = (),
) -> dict[int, Any]:
    by_index = {s.index: s for s in source.streams}
    replaced = {a.stream_index: a for a in encoded}
    outputs = {}
    for index in streams:
        if index in replaced:
            outputs[index] = add_aac_stream(output, replaced[index])
            continue
        try:
            stream = output.add_stream_from_template(by_index[index])
        except av.codec.codec.UnknownCodecError:  # no encoder of the decoder's name (libdav1d)
            stream = output.add_stream_from_template(by_index[index], opaque=True)
        if index in configs:
            stream.codec_context.extradata = configs[index]
        if stream.type == "video" and stream.codec_context.name == "hevc":
            stream.codec_tag = "hvc1"  # what Apple players want; parameter sets stay in hvcC
        outputs[index] = stream
    return outputs


def _packets(source: Any, job: SegmentJob) -> Iterator[Any]:
    """The job's packets in file order, after a seek that lands before its start."""
    streams = [s for s in source.streams if s.index in job.demuxed]
    margins = SEEK_MARGINS if job.start is not None else (None,)
    for attempt, margin in enumerate(margins):
        last = attempt == len(margins) - 1
        if margin is not None:
            assert job.start is not None
            anchor = next((s for s in streams if s.index == job.reference), streams[0])
            exact = job.by == "dts" and anchor.index == job.reference and margin == 0
            target = job.start.ticks if exact else int((job.start.seconds - margin) / anchor.time_base)
            source.seek(target, stream=anchor, backward=True)
        elif job.start is not None:
            source.seek(0, backward=True)
        selected = _select(_with_dts(_demux(source, streams)), job, may_miss=not last)
        first = next(selected, None)
        if first is _MISSED:
            continue  # the seek landed after the start: try from further back
        if first is not None:
            yield first
            yield from selected
        return


_MISSED = object()


def _demux(source: Any, streams: list[Any]) -> Iterator[Any]:
    """Demuxed packets until the end of the data: a truncated or damaged file ends there."""
    try:
        for packet in source.demux(streams):
            if packet.size:
                yield packet
    except (av.FFmpegError, EOFError):
        return


MAX_DTS_WAIT = 32  # video packets held for a DTS to be back-filled before one is guessed


def _with_dts(packets: Iterator[Any]) -> Iterator[Any]:
    """Packets with a DTS: Matroska gives none for the first B-frame-delayed video packets
    (also after a seek); each gets the next known DTS minus one frame per packet between."""
    held: dict[int, list[Any]] = {}
    last: dict[int, tuple[int, int]] = {}  # per stream: (dts, duration) of the last packet out
    for packet in packets:
        if packet.size == 0:
            continue
        index = packet.stream.index
        waiting = held.setdefault(index, [])
        if packet.dts is None and packet.pts is not None and packet.stream.type == "video":
            waiting.append(packet)
            if len(waiting) < MAX_DTS_WAIT:
                continue
            yield from _guess(waiting, last.get(index))
            continue
        if waiting and packet.dts is not None:
            step = packet.duration or max(1, (packet.dts - last[index][0]) if index in last else 1)
            for back, early in enumerate(reversed(waiting), 1):
                early.dts = packet.dts - back * step
            yield from waiting
            waiting.clear()
        if packet.dts is not None:
            last[index] = (packet.dts, packet.duration or 0)
        yield packet
    for index, waiting in held.items():
        yield from _guess(waiting, last.get(index))


def _guess(waiting: list[Any], last: tuple[int, int] | None) -> Iterator[Any]:
    """DTS for held packets with nothing after them: one frame after another."""
    dts, step = last if last is not None else (None, 0)
    for packet in waiting:
        dts = packet.pts if dts is None else dts + max(1, packet.duration or step)
        packet.dts = min(dts, packet.pts)
        yield packet
    waiting.clear()


LATE_AUDIO = Fraction(1, 2)  # an audio-only segment whose first packet is this late missed its start
MAX_HELD = 4096  # packets of other tracks held until the reference track's start keyframe


def _select(packets: Iterator[Any], job: SegmentJob, *, may_miss: bool) -> Iterator[Any]:
    """Filter demuxed packets to the segment's; yields ``_MISSED`` (and stops) if ``may_miss``
    and the start lies before where demuxing began."""
    has_reference = job.reference in job.demuxed
    start, end = job.start, job.end
    ref_in = start is None  # the reference track is between its start and end cut points
    started = ref_in or not has_reference  # held: other tracks' packets until the reference starts
    held: list[Any] = []
    done: set[int] = set()
    wanted = set(job.demuxed)
    yielded = False
    for packet in packets:
        if packet.size == 0 or (packet.pts is None and packet.dts is None):
            continue
        if packet.dts is None:
            packet.dts = packet.pts
        if packet.pts is None:
            packet.pts = packet.dts
        index = packet.stream.index
        seconds = packet.pts * packet.time_base
        if index == job.reference:
            ticks = packet.dts if job.by == "dts" else packet.pts
            if not ref_in and index not in done and start is not None:
                if packet.is_keyframe and ticks == start.ticks:
                    ref_in = started = True
                    yield from held
                    held.clear()
                elif may_miss and not started and ticks > start.ticks:
                    yield _MISSED
                    return
            if ref_in and end is not None and packet.is_keyframe and ticks == end.ticks:
                ref_in = False
                done.add(index)
            if ref_in:
                yield packet
            elif done >= wanted or _far_past(seconds, end):
                return
            continue
        if start is not None and seconds < start.seconds:
            continue
        if end is not None and seconds >= end.seconds:
            done.add(index)
            if done >= wanted or _far_past(seconds, end):
                return
            continue
        late = start is not None and seconds > start.seconds + LATE_AUDIO
        if may_miss and late and not has_reference and not yielded:
            yield _MISSED
            return
        if not started and len(held) < MAX_HELD:
            held.append(packet)
            continue
        yielded = True
        yield packet
    yield from held


def _far_past(seconds: Fraction, end: CutPoint | None) -> bool:
    return end is not None and seconds > end.seconds + READ_PAST


def _boxes(data: bytes, wanted: set[bytes]) -> bytes:
    """The top-level MP4 boxes of ``data`` whose type is in ``wanted``, in order."""
    out = []
    pos = 0
    while pos + 8 <= len(data):
        size, kind = struct.unpack_from(">I4s", data, pos)
        if size == 1:
            size = struct.unpack_from(">Q", data, pos + 8)[0]
        if size < 8 or pos + size > len(data):
            raise MediaError("the muxer wrote a damaged MP4 box")
        if kind in wanted:
            out.append(data[pos : pos + size])
        pos += size
    return b"".join(out)
