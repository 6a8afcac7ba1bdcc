"""A WebRTC viewer's playback of a file: ``Playback`` with its video converted to H.264 where the
browser cannot decode it (HEVC, H.264 with B-frames), in the playback's reading threads."""

from __future__ import annotations

from fractions import Fraction

from media.access_unit import AccessUnit
from media.reader import MediaReader
from media.transcode import TranscodingReader
from media.video_transcode import VideoToH264
from streamd.playback import Playback


class ConvertingReader:
    """A reader whose chosen video tracks come out as H.264 (``VideoToH264``); the rest as read."""

    def __init__(self, inner: MediaReader | TranscodingReader, converters: dict[int, VideoToH264]) -> None:
        self.inner = inner
        self.converters = converters
        self._out: list[AccessUnit] = []
        self._ended = False

    def read(self) -> AccessUnit | None:
        while not self._out:
            au = self.inner.read()
            if au is None:
                if self._ended:
                    return None
                self._ended = True
                for converter in self.converters.values():
                    self._out += converter.flush()
                if not self._out:
                    return None
                break
            converter = self.converters.get(au.stream_index)
            if converter is None:
                return au
            self._out += converter.feed(au)
        return self._out.pop(0)

    def seek(self, seconds: Fraction) -> Fraction:
        actual = self.inner.seek(seconds)
        self._out.clear()
        self._ended = False
        for converter in self.converters.values():
            converter.reset()
        return actual

    def close(self) -> None:
        self.inner.close()


class WebrtcPlayback(Playback):
    """``video``: indices of the tracks to convert (their presentation track is already H.264)."""

    video: frozenset[int] = frozenset()

    def _open_reader(self):  # type: ignore[no-untyped-def]
        p = self.presentation
        source = p.source_info or p.info
        indices = list(self.bindings)
        inner: MediaReader | TranscodingReader
        if p.transcode:
            inner = TranscodingReader(self.file, source, indices, dict(p.transcode), loop=p.loop)
        else:
            inner = MediaReader(self.file, source, indices, loop=p.loop)
        converters = {i: VideoToH264(source.track(i)) for i in self.video if i in indices}
        return ConvertingReader(inner, converters) if converters else inner
