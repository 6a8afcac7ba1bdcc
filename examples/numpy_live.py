"""Serve numpy frames (a moving pattern) and a tone as the live path rtsp://127.0.0.1:8554/live/sim.

    python examples/numpy_live.py            # then: ffplay rtsp://127.0.0.1:8554/live/sim
    python examples/numpy_live.py --seconds 10 --rtsp-port 8554 --rtp-port 8000

A plain synchronous loop, as an OpenCV or simulation program would have: the server runs in a
background thread, ``send()`` only queues the frame and returns.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import streamd

WIDTH, HEIGHT, FPS, RATE = 640, 360, 25, 48000


def picture(n: int) -> np.ndarray:
    """A colour gradient drifting sideways with a white bar sweeping down (RGB, HEIGHT x WIDTH x 3)."""
    x = np.arange(WIDTH, dtype=np.uint16)
    y = np.arange(HEIGHT, dtype=np.uint16)[:, None]
    frame = np.empty((HEIGHT, WIDTH, 3), np.uint8)
    frame[..., 0] = (x + 4 * n) % 256
    frame[..., 1] = (y + 2 * n) % 256
    frame[..., 2] = 128
    bar = (6 * n) % HEIGHT
    frame[bar : bar + 12] = 255
    return frame


def tone(n: int) -> np.ndarray:
    """One frame's worth of a 440 Hz beep (on for half of each second), stereo float32."""
    samples = RATE // FPS
    t = (np.arange(samples) + n * samples) / RATE
    wave = 0.2 * np.sin(2 * np.pi * 440 * t) * ((t % 1) < 0.5)
    return np.repeat(wave[:, None], 2, axis=1).astype(np.float32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=0, help="stop after this long (0: until Ctrl-C)")
    parser.add_argument("--rtsp-port", type=int, default=8554)
    parser.add_argument("--rtp-port", type=int, default=8000)
    parser.add_argument("--path", default="live/sim")
    args = parser.parse_args()

    with streamd.serve_in_thread(rtsp_port=args.rtsp_port, rtp_port=args.rtp_port) as server:
        publisher = server.publish(args.path, WIDTH, HEIGHT, FPS, sample_rate=RATE)
        print(f"serving {server.url(args.path)}", flush=True)
        start = time.monotonic()
        n = 0
        try:
            while not args.seconds or time.monotonic() - start < args.seconds:
                publisher.send(picture(n))
                publisher.send_audio(tone(n))
                n += 1
                time.sleep(max(0.0, start + n / FPS - time.monotonic()))  # the simulation's own pace
        except KeyboardInterrupt:
            pass
        publisher.close()  # readers get RTCP BYE; DESCRIBE now answers 404
        print(f"sent {publisher.frames_sent} frames, {publisher.frames_dropped} dropped", flush=True)


if __name__ == "__main__":
    main()
