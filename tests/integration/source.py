"""What a source file holds, in the forms players hand back, for exact comparisons."""

from __future__ import annotations

import subprocess
from pathlib import Path

from media.aac import parse_adts_header, split_adts
from media.h264 import nal_type, split_annexb
from media.probe import probe
from media.reader import MediaReader

# Parameter sets (sent in-band again before each IDR), AUD and filler are not part of the
# comparison: RTP senders may add or drop them by design (RFC 6184).
IGNORED_NAL_TYPES = {7, 8, 9, 12}


def comparable(nals: list[bytes]) -> list[bytes]:
    return [n for n in nals if n and nal_type(n) not in IGNORED_NAL_TYPES]


def source_video_nals(path: Path) -> list[bytes]:
    info = probe(path)
    video = next(t for t in info.tracks if t.kind == "video")
    nals: list[bytes] = []
    with MediaReader(path, info, [video.index]) as reader:
        while (au := reader.read()) is not None:
            nals.extend(au.nal_units)
    return comparable(nals)


def source_audio_frames(path: Path) -> list[bytes]:
    info = probe(path)
    audio = next(t for t in info.tracks if t.kind == "audio")
    frames = []
    with MediaReader(path, info, [audio.index]) as reader:
        while (au := reader.read()) is not None:
            frames.append(au.data)
    return frames


def source_video_frame_count(path: Path) -> int:
    info = probe(path)
    video = next(t for t in info.tracks if t.kind == "video")
    with MediaReader(path, info, [video.index]) as reader:
        count = 0
        while reader.read() is not None:
            count += 1
    return count


def received_video_nals(annexb: Path) -> list[bytes]:
    return comparable(split_annexb(annexb.read_bytes()))


def received_audio_frames(adts: Path) -> list[bytes]:
    return [frame for _header, frame in split_adts(adts.read_bytes())]


def complete_adts_frames(adts: Path) -> int:
    """How many whole ADTS frames a file being written holds so far (0 if it is not there yet)."""
    try:
        data = adts.read_bytes()
    except FileNotFoundError:
        return 0
    count = pos = 0
    while pos + 7 <= len(data):
        end = pos + parse_adts_header(data, pos).frame_length
        if end > len(data):
            break
        count, pos = count + 1, end
    return count


def ffmpeg_copy(
    input_args: list[str], video: Path, audio: Path, seconds: float | None = None, timeout: float = 30
) -> None:
    """ffmpeg reads ``input_args`` (``-i URL`` and its options), for ``seconds`` or to the end, and
    writes the video as Annex B and the audio as ADTS, untouched (``-c copy``), for exact comparison."""
    limit = ["-t", str(seconds)] if seconds is not None else []
    result = subprocess.run(
        ["ffmpeg", "-nostdin", "-loglevel", "error", *input_args,
         "-map", "0:v", "-c", "copy", *limit, "-f", "h264", "-y", str(video),
         "-map", "0:a", "-c", "copy", *limit, "-f", "adts", "-y", str(audio)],
        capture_output=True, timeout=timeout,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr.decode(errors="replace")
