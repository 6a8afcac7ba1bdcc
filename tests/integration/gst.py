"""GStreamer's ``gst-launch-1.0`` as a test client, with its known shutdown race told apart."""

from __future__ import annotations

import contextlib
import os
import subprocess
import threading
import time
from collections.abc import Callable, Iterator

from tests.waiting import wait_until

# Put right after a depayloader in a test pipeline that must keep every buffer. rtspsrc's segment
# ends at the PLAY Range's end, and its jitter buffer times buffers by their arrival: on a loaded
# machine the last ones arrive late, are timed past the end, and sinks and decoders drop them as
# out of segment (bytes missing at the end of the stream). One open segment keeps them all.
KEEP_ALL = "identity single-segment=true"


def rtspsrc_shutdown_race(returncode: int, output: str) -> bool:
    """True when the only error is GStreamer 1.22's own race at the end of a stream.

    At EOS, gst-launch takes the pipeline down through PAUSED: rtspsrc starts sending PAUSE, and
    the close that follows flushes the connection under it, so the PAUSE fails with "Received
    end-of-file" and gst-launch exits 1, although every buffer had arrived and our TEARDOWN reply
    came on the same, still open, connection. Over an HTTP tunnel the same close can come before
    the PAUSE: then the error is posted from ``gst_rtspsrc_try_send`` and ``gst_rtspsrc_close``, with
    "Received end-of-file" (GStreamer closed the tunnel's connections itself; the server logs the
    whole stream sent). Under load the close can also cut a write of GStreamer's own in the middle
    (seen over RTSPS: an interleaved RTCP frame cut short, so the server read the next request's
    tail as a request line, 'r/1.22.0', and answered 400): then reads fail too ("Could not read
    from resource", a parse error of that answer). Callers check the data themselves.
    """
    errors = [line for line in output.splitlines() if line.startswith("ERROR")]
    closing = "gst_rtspsrc_pause" in output or (
        "gst_rtspsrc_close" in output and "Received end-of-file" in output
    )
    resource = ("Could not write to resource", "Could not read from resource")
    return (
        returncode == 1
        and bool(errors)
        and all(any(failed in line for failed in resource) for line in errors)
        and closing
    )


def rtspclientsink_shutdown_race(returncode: int, output: str) -> bool:
    """True when rtspclientsink's only error is the same race on the publishing side.

    At EOS it sends PAUSE and TEARDOWN, both answered (the server logs the session's end), and
    closes; a last message it still tries to send then fails with "Received end-of-file" in
    ``gst_rtsp_client_sink_try_send``. Callers check on the server that the publish happened.
    """
    errors = [line for line in output.splitlines() if line.startswith("ERROR")]
    return (
        returncode == 1
        and bool(errors)
        and all("Could not write to resource" in line for line in errors)
        and "gst_rtsp_client_sink_try_send" in output
        and "Received end-of-file" in output
    )


def run_pipeline(pipeline: str, timeout: float = 60) -> None:
    """Run ``pipeline`` to its end; fail with GStreamer's output on any error but the race."""
    result = subprocess.run(["gst-launch-1.0", "-q", *pipeline.split()], capture_output=True, timeout=timeout)
    output = result.stdout.decode(errors="replace") + result.stderr.decode(errors="replace")
    if result.returncode != 0 and not rtspsrc_shutdown_race(result.returncode, output):
        raise AssertionError(f"gst-launch-1.0 exited {result.returncode}:\n{output[-3000:]}")


# rtpsession's debug line when a stream's EOS reaches it: every RTP packet of that stream was sent
_STREAM_SENT = "received EVENT eos"


def publish(pipeline: str, streams: int, timeout: float = 20) -> None:
    """Run ``pipeline``, which ends in rtspclientsink with ``streams`` inputs, until it has sent them all.

    rtspclientsink usually tears down and exits at the end of its input, but now and then GStreamer
    1.22 stays connected after every stream's EOS has passed its RTP sessions (their BYEs sent) and
    never exits: it is stopped then, once it says it has sent everything, instead of after a long
    wait. Without those debug lines (another GStreamer) it is stopped after ``timeout`` seconds.
    """
    env = {**os.environ, "GST_DEBUG": "rtpsession:5", "GST_DEBUG_NO_COLOR": "1"}
    args = ["gst-launch-1.0", "-q", "-e", *pipeline.split()]
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    sent = threading.Event()

    def watch() -> None:
        assert process.stderr is not None
        ended = 0
        for line in process.stderr:  # read to the end, so GStreamer never blocks on a full pipe
            ended += _STREAM_SENT in line
            if ended == streams:
                sent.set()

    reader = threading.Thread(target=watch, daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + timeout
        while process.poll() is None and not sent.is_set() and time.monotonic() < deadline:
            sent.wait(0.1)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(2)  # the usual teardown follows within milliseconds
    finally:
        if process.poll() is None:
            process.terminate()  # the kernel still delivers what it sent, then the connection closes
            process.wait(10)
        reader.join(10)


@contextlib.contextmanager
def live_publisher(pipeline: str, is_live: Callable[[], bool]) -> Iterator[None]:
    """``pipeline`` (a live source into rtspclientsink) publishing for the block, once ``is_live()``
    (the server's log says the path is live); fails with GStreamer's output if it exits first."""
    command = ["gst-launch-1.0", "-q", *pipeline.split()]
    publisher = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: is_live() or publisher.poll() is not None, "the publisher")
        assert publisher.poll() is None, publisher.stdout.read().decode(errors="replace")  # type: ignore[union-attr]
        yield
    finally:
        publisher.terminate()
        publisher.wait(10)
