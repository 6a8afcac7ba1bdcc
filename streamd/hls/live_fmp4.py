"""CMAF fragments (``moof`` + ``mdat``) for LL-HLS parts, and the init segment they refer to.

The init segment (``ftyp`` + ``moov``) comes from FFmpeg's MP4 muxer through
:class:`media.muxer.FileMuxer`, which already turns Annex B parameter sets into avcC/hvcC and
knows the AAC and Opus sample entries. A part is a single movie fragment, written here: it is a
few fixed boxes around the samples, must be cut exactly where the segmenter decides (FFmpeg cuts
where its own rules say) and is made on the event loop for every part of every live path, so a
muxer and a thread per path would cost more than these thirty lines of ``struct``.

Boxes (ISO/IEC 14496-12): ``mfhd`` (sequence), per track a ``traf`` with ``tfhd``
(default-base-is-moof), ``tfdt`` (version 1: 64-bit decode time) and ``trun`` (version 1: signed
composition offsets; data offset, duration, size, flags and offset per sample).
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass

from media.muxer import FileMuxer, MuxTrack

KEY_FLAGS = 0x02000000  # sample_depends_on = 2: decodable on its own
DELTA_FLAGS = 0x01010000  # sample_depends_on = 1, sample_is_non_sync_sample
TFHD_DEFAULT_BASE_IS_MOOF = 0x020000
TRUN_FLAGS = 0x000001 | 0x000100 | 0x000200 | 0x000400 | 0x000800  # offset, duration, size, flags, cts


@dataclass(frozen=True, slots=True)
class Sample:
    """One access unit as it goes into a fragment: times in the track's timescale."""

    dts: int
    duration: int
    cts: int  # pts - dts (>= 0 here, signed in the box)
    data: bytes  # video: length-prefixed NAL units (4-byte lengths), audio: the raw frame
    keyframe: bool


def _box(kind: bytes, *payload: bytes) -> bytes:
    body = b"".join(payload)
    return struct.pack(">I4s", 8 + len(body), kind) + body


def fragment(sequence: int, runs: list[tuple[int, list[Sample]]]) -> bytes:
    """One movie fragment: ``runs`` is (track ID, samples in decode order) for each track present."""
    runs = [(track_id, samples) for track_id, samples in runs if samples]
    # trun sizes are fixed, so the data offsets can be computed before the boxes are built
    traf_sizes = [8 + 16 + 20 + (8 + 12 + 16 * len(samples)) for _, samples in runs]
    moof_size = 8 + 16 + sum(traf_sizes)
    offset = moof_size + 8  # the first sample's byte, counted from the moof (default-base-is-moof)
    trafs = []
    for track_id, samples in runs:
        tfhd = _box(b"tfhd", struct.pack(">II", TFHD_DEFAULT_BASE_IS_MOOF, track_id))
        tfdt = _box(b"tfdt", struct.pack(">IQ", 0x01000000, samples[0].dts))
        entries = b"".join(
            struct.pack(">IIIi", s.duration, len(s.data), KEY_FLAGS if s.keyframe else DELTA_FLAGS, s.cts)
            for s in samples
        )
        trun = _box(b"trun", struct.pack(">IIi", 0x01000000 | TRUN_FLAGS, len(samples), offset), entries)
        trafs.append(_box(b"traf", tfhd, tfdt, trun))
        offset += sum(len(s.data) for s in samples)
    moof = _box(b"moof", _box(b"mfhd", struct.pack(">II", 0, sequence)), *trafs)
    assert len(moof) == moof_size
    mdat = _box(b"mdat", *(s.data for _, samples in runs for s in samples))
    return moof + mdat


class _Collect(io.RawIOBase):
    def __init__(self) -> None:
        self.data = bytearray()

    def writable(self) -> bool:
        return True

    def write(self, data: bytes) -> int:  # type: ignore[override]
        self.data += data
        return len(data)


def init_segment(tracks: list[MuxTrack], first: tuple[int, bytes]) -> bytes:
    """``ftyp`` + ``moov`` for ``tracks`` (track IDs 1, 2, ... in this order), from FFmpeg's muxer.

    FFmpeg writes the header when the first packet comes, so ``first`` (slot, Annex B or raw data)
    is muxed once and everything after the ``moov`` thrown away. Blocking but short (no decoding).
    """
    sink = _Collect()
    muxer = FileMuxer(sink, "mp4", tracks)  # type: ignore[arg-type]
    try:
        muxer.write(first[0], 0, 0, first[1], True, 1)
    finally:
        muxer.close()
    data = bytes(sink.data)
    end, position = 0, 0
    while position + 8 <= len(data):
        size, kind = struct.unpack_from(">I4s", data, position)
        if size < 8:
            break
        position += size
        if kind == b"moov":
            end = position
            break
    if not end:
        raise ValueError("the MP4 muxer wrote no moov")
    return data[:end]
