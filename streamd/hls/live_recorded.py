"""A recorded live path's older segments, read back from its recording once they left memory.

The recorder (:mod:`streamd.live.recorder`) writes the same access units to MP4 files, bit for
bit, with decode times from the same :class:`media.dts.DtsGenerator`. A segment that left the
in-memory window keeps what finds it again: the SHA-1 of its first main-track sample (a keyframe)
and, per track, the decode time of its first sample on the HLS timeline and how many samples it
had. Reading it back: in the path's newest finished recordings, the keyframe with that digest,
then that many samples of each track from the same instant, their decode times moved onto the
HLS timeline, written as one fragment. Blocking (PyAV): run it in a worker thread.
"""

from __future__ import annotations

import calendar
import hashlib
import logging
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av

from streamd.catalog import PARTIAL_SUFFIX
from streamd.hls.live_fmp4 import Sample, fragment
from streamd.hls.live_segmenter import Segment

log = logging.getLogger(__name__)

MAX_FILES = 64  # recordings searched for one segment, newest first
MAX_PACKETS = 200_000  # packets read from one file
SKEW_SECONDS = 5.0  # how far the publisher's clock (program date) may be from the recorder's names


@dataclass(frozen=True)
class _Packet:
    seconds: Fraction  # decode time
    pts_offset: Fraction  # pts - dts
    duration: Fraction
    data: bytes
    keyframe: bool


def read_back(folder: Path, segment: Segment, kinds: list[str], timescales: list[int]) -> bytes | None:
    """The segment's ``moof`` + ``mdat`` from the recordings in ``folder``, or None if not found."""
    if not segment.key or not folder.is_dir():
        return None
    files = [f for f in folder.iterdir() if f.suffix == ".mp4" and not f.name.endswith(PARTIAL_SUFFIX)]
    for file in sorted(files, key=lambda f: _nearness(f, segment.wall))[:MAX_FILES]:
        try:
            data = _from_file(file, segment, kinds, timescales)
        except (av.FFmpegError, OSError, ValueError) as exc:
            log.warning("%s: cannot read back a segment: %s", file, exc)
            continue
        if data is not None:
            return data
    return None


def _nearness(file: Path, wall: float | None) -> tuple[int, float]:
    """Search order: the file that began last before the segment (names are the UTC time the
    recorder began them), then the others by distance; files of other names last."""
    try:
        began = calendar.timegm(time.strptime(file.stem[:19], "%Y-%m-%d_%H-%M-%S"))
    except ValueError:
        return (2, 0.0)
    if wall is None:
        return (1, -began)
    return (0 if began <= wall + SKEW_SECONDS else 1, abs(wall - began))


def _from_file(file: Path, segment: Segment, kinds: list[str], timescales: list[int]) -> bytes | None:
    with av.open(str(file)) as container:
        streams: list[Any] = []
        for kind in kinds:  # our slots by kind: the first video, the first audio
            found = [s for s in container.streams if s.type == kind]
            if not found:
                return None
            streams.append(found[0])
        packets: list[list[_Packet]] = [[] for _ in streams]
        by_index = {s.index: slot for slot, s in enumerate(streams)}
        for count, packet in enumerate(container.demux(streams)):
            if count > MAX_PACKETS:
                break
            if packet.dts is None or packet.size == 0:
                continue
            tb = packet.time_base
            pts = packet.pts if packet.pts is not None else packet.dts
            packets[by_index[packet.stream.index]].append(
                _Packet(
                    packet.dts * tb,
                    (pts - packet.dts) * tb,
                    (packet.duration or 0) * tb,
                    bytes(packet),
                    packet.is_keyframe,
                )
            )
    main = packets[0]
    start = next(
        (i for i, p in enumerate(main) if p.keyframe and hashlib.sha1(p.data).digest() == segment.key), None
    )
    if start is None:
        return None
    main_first = segment.runs[0][0]
    origin = main[start].seconds  # the file's time of the segment's first main sample
    runs = []
    for slot, (first, count) in enumerate(segment.runs):
        if first < 0 or not count:
            continue
        scale = timescales[slot]
        at = origin + Fraction(first, scale) - Fraction(main_first, timescales[0])  # our first sample
        missing, frame = 0, Fraction(0)
        if slot == 0:
            chosen = main[start : start + count]
        else:  # the same instant: as far after the keyframe as on the HLS timeline
            frame = min((p.duration for p in packets[slot] if p.duration), default=Fraction(0))
            begin = next((i for i, p in enumerate(packets[slot]) if p.seconds >= at - frame / 2), None)
            if begin is None or not frame:
                return None
            # audio older than the keyframe that began this file went to the file before: a
            # segment there lacks those few frames
            missing = max(0, round((packets[slot][begin].seconds - at) / frame))
            chosen = packets[slot][begin : begin + count - missing]
            if missing:
                log.info(
                    "%s: %d audio frames of segment %d are in the file before",
                    file.name,
                    missing,
                    segment.msn,
                )
        if not chosen:
            return None
        # decode times from the first sample on, in the track's own steps: the file's A/V offset is
        # rounded per file (a third of a millisecond off), the track's spacing is exact
        base = first + (round(missing * frame * scale) if missing else 0)
        samples = []
        for i, p in enumerate(chosen):
            end = chosen[i + 1].seconds if i + 1 < len(chosen) else p.seconds + p.duration
            dts = base + round((p.seconds - chosen[0].seconds) * scale)
            duration = base + round((end - chosen[0].seconds) * scale) - dts
            samples.append(
                Sample(dts, max(1, duration), round(p.pts_offset * scale), p.data, p.keyframe or slot > 0)
            )
        runs.append((slot + 1, samples))
    return fragment(segment.msn + 1, runs)
