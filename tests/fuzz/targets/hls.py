"""Live HLS request input: a playlist request's query (the ``_HLS_*`` delivery directives) and the
object names under ``/hls/<path>/main/``."""

from __future__ import annotations

from urllib.parse import parse_qsl

from streamd.hls.live_directives import Decision, DirectiveError, decide, parse
from streamd.hls.live_fmp4 import Sample
from streamd.hls.live_routes import _OBJECT
from streamd.hls.live_segmenter import LiveSegmenter, SegmenterSettings

_SEGMENTER = LiveSegmenter([90000], 0, SegmenterSettings())
for _n in range(80):  # 3.2 s of 25 fps video, a keyframe a second: segments 0-1 complete, 2 open
    _SEGMENTER.push(0, Sample(_n * 3600, 0, 0, b"x", _n % 25 == 0))


def fuzz_hls_directives(data: bytes) -> None:
    """``parse``: Directives or DirectiveError (400); ``decide`` then answers without raising, and
    a part index past a complete segment's last part never makes it wait."""
    text = data.decode("utf-8", "replace")
    query = dict(parse_qsl(text, keep_blank_values=True))
    try:
        directives = parse(query)
    except DirectiveError:
        return
    assert directives.part is None or directives.msn is not None
    decision = decide(_SEGMENTER, directives)
    assert isinstance(decision, Decision)
    if directives.msn is not None and directives.msn <= _SEGMENTER.last_complete - 1 and directives.part:
        assert decision is Decision.READY
    name = text.split("?", 1)[0]
    match = _OBJECT.fullmatch(name)
    if match is not None:
        assert name.endswith((".mp4", ".m4s"))
