"""Seek a GStreamer rtspsrc pipeline (run with the system Python that has PyGObject).

Usage: python3 gst_seek.py URL SEEK_SECONDS
Prints one JSON line: the positions before and after the seek and whether EOS/errors came.
"""

import json
import sys

import gi

gi.require_version("Gst", "1.0")
from gi.repository import GLib, Gst  # noqa: E402

Gst.init(None)
url, target = sys.argv[1], float(sys.argv[2])
pipeline = Gst.parse_launch(f"playbin uri={url} video-sink=fakesink audio-sink=fakesink")
bus = pipeline.get_bus()
result = {"seeked": False, "error": None}


def position() -> float:
    ok, value = pipeline.query_position(Gst.Format.TIME)
    return value / Gst.SECOND if ok else -1.0


def run_for(seconds: float) -> None:
    loop = GLib.MainLoop()
    GLib.timeout_add(int(seconds * 1000), loop.quit)

    def on_message(_bus, message):
        if message.type == Gst.MessageType.ERROR:
            result["error"] = str(message.parse_error()[0])
            loop.quit()
        return True

    bus.add_signal_watch()
    handler = bus.connect("message", on_message)
    loop.run()
    bus.disconnect(handler)
    bus.remove_signal_watch()


pipeline.set_state(Gst.State.PLAYING)
pipeline.get_state(10 * Gst.SECOND)
run_for(1.5)
result["before"] = position()
result["seeked"] = pipeline.seek_simple(
    Gst.Format.TIME, Gst.SeekFlags.FLUSH | Gst.SeekFlags.KEY_UNIT, int(target * Gst.SECOND)
)
pipeline.get_state(10 * Gst.SECOND)
run_for(1.5)
result["after"] = position()
pipeline.set_state(Gst.State.NULL)
print(json.dumps(result))
