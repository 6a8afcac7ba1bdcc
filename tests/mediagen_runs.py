"""Files whose tracks come in per-track runs: fragmented MP4 as muxers write it (each fragment holds
about a second of video, then the same second of audio) and Matroska written track by track."""

from __future__ import annotations

from pathlib import Path

import av

from tests import mediagen


def make_fragmented_mp4(path: Path, seconds: float = 6, run_seconds: float = 1, **kwargs: object) -> Path:
    """H.264 + AAC remuxed into a fragmented MP4 (``frag_keyframe+empty_moov``, one GOP per run)."""
    source = path.with_name(path.stem + "-source.mp4")
    fps = int(kwargs.pop("fps", 25))  # type: ignore[call-overload]
    mediagen.make_h264_aac_mp4(
        source,
        seconds=seconds,
        faststart=True,
        fps=fps,
        gop=round(fps * run_seconds),
        **kwargs,  # type: ignore[arg-type]
    )
    options = {
        "movflags": "frag_keyframe+empty_moov+default_base_moof",
        "frag_duration": str(int(run_seconds * 1e6)),
    }
    with av.open(str(source)) as src, av.open(str(path), "w", format="mp4", options=options) as out:
        streams = {s.index: out.add_stream_from_template(s) for s in src.streams}
        for packet in src.demux():
            if packet.dts is None:
                continue
            packet.stream = streams[packet.stream.index]
            out.mux(packet)
    source.unlink()
    return path


def make_grouped_mkv(path: Path, seconds: float = 25, run_seconds: float = 10, **kwargs: object) -> Path:
    """H.264 + AAC in Matroska written track by track: ``run_seconds`` of video, then the same
    stretch of audio (what a badly interleaving muxer leaves; longer runs than any read-ahead)."""
    source = path.with_name(path.stem + "-source.mp4")
    mediagen.make_h264_aac_mp4(source, seconds=seconds, faststart=True, bframes=False, gop=25, **kwargs)  # type: ignore[arg-type]
    with av.open(str(source)) as src:
        packets = [p for p in src.demux() if p.dts is not None]
        # a tiny interleave window: the muxer writes packets in the order given, not by DTS
        with av.open(str(path), "w", format="matroska", options={"max_interleave_delta": "1"}) as out:
            streams = {s.index: out.add_stream_from_template(s) for s in src.streams}
            start = 0.0
            while start < seconds:
                for index in sorted(streams):
                    for packet in packets:
                        if (
                            packet.stream.index == index
                            and start <= packet.dts * packet.time_base < start + run_seconds
                        ):
                            packet.stream = streams[index]
                            out.mux(packet)
                start += run_seconds
    source.unlink()
    return path
