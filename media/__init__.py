"""The PyAV-facing layer: probe files, read access units, codec bitstream helpers, test source.

Knows nothing of RTP or RTSP. The data types load without PyAV; ``probe``, ``MediaReader`` and
``ensure_test_stream`` import it on first use, so protocol code and its tests stay light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from media.access_unit import AccessUnit
from media.errors import MediaError, UnsupportedMedia
from media.track import AacConfig, CodecConfig, H264Config, MediaInfo, Track

if TYPE_CHECKING:
    from media.probe import probe
    from media.reader import MediaReader
    from media.testsrc import ensure_test_stream

_LAZY = {
    "probe": "media.probe",
    "MediaReader": "media.reader",
    "ensure_test_stream": "media.testsrc",
}

__all__ = [
    "AacConfig",
    "AccessUnit",
    "CodecConfig",
    "H264Config",
    "MediaError",
    "MediaInfo",
    "MediaReader",
    "Track",
    "UnsupportedMedia",
    "ensure_test_stream",
    "probe",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'media' has no attribute {name!r}")
