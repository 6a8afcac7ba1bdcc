"""Which tracks /mp4 copies and which it converts, decided by codec, never by PyAV's decoder name."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from streamd.http import fmp4


def _av1_file(folder: Path) -> Path:
    encoder = next((name for name in ("libsvtav1", "libaom-av1") if name in av.codecs_available), None)
    if encoder is None:
        pytest.skip("PyAV has no AV1 encoder")
    file = folder / "clip.mkv"
    with av.open(str(file), "w") as container:
        stream = container.add_stream(encoder, rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
        for i in range(5):
            frame = av.VideoFrame.from_ndarray(np.zeros((64, 64, 3), np.uint8), format="rgb24")
            frame.pts = i
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return file


def test_av1_is_copied_unless_the_browser_asked_for_h264(tmp_path: Path) -> None:
    with av.open(str(_av1_file(tmp_path))) as container:
        assert container.streams.video[0].codec_context.name == "libdav1d"  # the decoder's name
        assert fmp4._plan(container) == {0: "copy"}
        assert fmp4._plan(container, to_h264=True) == {0: "encode"}
