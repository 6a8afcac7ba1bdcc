"""A live path fed by the program itself: LivePath.from_tracks/push_unit and FramePublisher, no sockets."""

from __future__ import annotations

import asyncio
import itertools
import threading
import time

import numpy as np
import pytest

from media.access_unit import AccessUnit
from media.live_encoder import LiveAudioEncoder, LiveVideoEncoder
from streamd.live.hub import LivePath
from streamd.live.python_source import AudioSettings, FramePublisher, VideoSettings, path_tracks

W, H, FPS = 64, 48, 25


class Collector:
    """A reader: remembers what the path hands out."""

    def __init__(self) -> None:
        self.got: list[tuple[int, int, list[tuple[bytes, bool]], bool]] = []

    def __call__(
        self, index: int, ticks: int, payloads: list[tuple[bytes, bool]], keyframe: bool, leading: bool
    ) -> None:
        self.got.append((index, ticks, payloads, keyframe))


def test_push_unit_packetizes_once_for_every_reader_and_only_while_online() -> None:
    video = LiveVideoEncoder(W, H, FPS)
    audio = LiveAudioEncoder(48000, 1, codec="opus")
    tracks = path_tracks(video, audio)
    assert [(t.index, t.control, t.payload_format.payload_type) for t in tracks] == [
        (0, "trackID=0", 96),
        (1, "trackID=1", 97),
    ]
    live = LivePath.from_tracks("live/x", tracks, "test", started=1000.0)
    assert live.tracks[1].now_ticks(1001.0) == 48000, "tick 0 of every track is the start"
    a, b = Collector(), Collector()
    live.readers |= {a, b}
    (au,) = video.encode(np.zeros((H, W, 3), np.uint8), 1800)
    live.push_unit(0, au)
    assert a.got == [], "offline: nothing goes out"
    live.online = True
    live.push_unit(0, au)
    live.push_unit(1, AccessUnit(1, 960, 960, True, b"\xfc\x01\x02"))
    live.push_unit(7, au)  # no such track
    assert a.got == b.got and len(a.got) == 2
    index, ticks, payloads, keyframe = a.got[0]
    assert (index, ticks, keyframe) == (0, 1800, True)
    assert payloads[-1][1] and not any(marker for _, marker in payloads[:-1])
    assert a.got[1] == (1, 960, [(b"\xfc\x01\x02", False)], True)
    assert live.units_in == 2


def run_publisher(body, **options):  # type: ignore[no-untyped-def]
    """Run ``body(publisher, collector)`` in a thread next to a real event loop; return what readers got."""

    async def main() -> tuple[FramePublisher, Collector, list[LivePath]]:
        closed: list[LivePath] = []
        publisher = FramePublisher(
            "live/py", asyncio.get_running_loop(), VideoSettings(W, H, FPS), on_close=closed.append, **options
        )
        collector = Collector()
        publisher.path.readers.add(collector)
        publisher.path.online = True
        await asyncio.to_thread(body, publisher)
        # every frame sent taken by the encoder thread (encoded or dropped) and what it encoded
        # delivered: data, not a pause, which a loaded machine may need more than
        deadline = time.monotonic() + 30
        while not (
            publisher.frames_encoded + publisher.frames_dropped == publisher.frames_sent
            and sum(1 for index, *_ in collector.got if index == 0) >= publisher.frames_encoded
        ):
            assert time.monotonic() < deadline, (publisher.frames_sent, publisher.frames_encoded)
            await asyncio.sleep(0.01)
        publisher.close()
        await asyncio.sleep(0.05)
        return publisher, collector, closed

    return asyncio.run(main())


def test_sent_frames_reach_the_readers_and_close_ends_the_path() -> None:
    def body(publisher: FramePublisher) -> None:
        for n in range(10):
            publisher.send(np.full((H, W, 3), n * 20, np.uint8), timestamp=n / FPS)

    publisher, collector, closed = run_publisher(body, max_queued_frames=16)
    assert [(i, t) for i, t, _, _ in collector.got] == [(0, n * 3600) for n in range(10)]
    assert collector.got[0][3], "starts on a keyframe"
    assert closed == [publisher.path]
    assert (publisher.frames_sent, publisher.frames_encoded, publisher.frames_dropped) == (10, 10, 0)
    with pytest.raises(RuntimeError, match="closed"):
        publisher.send(np.zeros((H, W, 3), np.uint8))
    publisher.close()  # idempotent
    assert closed == [publisher.path]


def test_when_the_encoder_falls_behind_the_oldest_frames_are_dropped() -> None:
    def body(publisher: FramePublisher) -> None:
        entered, release = threading.Event(), threading.Event()
        encode = publisher._video.encode

        def slow(frame, ticks):  # type: ignore[no-untyped-def]
            entered.set()
            release.wait(5)
            return encode(frame, ticks)

        publisher._video.encode = slow  # type: ignore[method-assign]
        publisher.send(np.zeros((H, W, 3), np.uint8), timestamp=0)
        assert entered.wait(5)
        for n in range(1, 6):
            publisher.send(np.zeros((H, W, 3), np.uint8), timestamp=n / FPS)
        release.set()

    publisher, collector, _ = run_publisher(body, max_queued_frames=2)
    assert (publisher.frames_sent, publisher.frames_dropped, publisher.frames_encoded) == (6, 3, 3)
    assert [t for _, t, _, _ in collector.got] == [0, 4 * 3600, 5 * 3600], "the newest frames are kept"


def test_a_wrong_frame_is_refused_at_send_and_audio_needs_an_audio_track() -> None:
    def body(publisher: FramePublisher) -> None:
        with pytest.raises(ValueError, match="shape"):
            publisher.send(np.zeros((H, W), np.uint8))
        with pytest.raises(RuntimeError, match="without audio"):
            publisher.send_audio(np.zeros((480, 2), np.float32))

    publisher, collector, _ = run_publisher(body)
    assert collector.got == [] and publisher.frames_sent == 0


def test_dropped_audio_becomes_silence_so_audio_keeps_its_place() -> None:
    rate = 16000

    def body(publisher: FramePublisher) -> None:
        entered, release = threading.Event(), threading.Event()
        encode = publisher._video.encode

        def slow(frame, ticks):  # type: ignore[no-untyped-def]
            entered.set()
            release.wait(5)
            return encode(frame, ticks)

        publisher._video.encode = slow  # type: ignore[method-assign]
        publisher.send(np.zeros((H, W, 3), np.uint8), timestamp=0)
        assert entered.wait(5)
        for _ in range(6):  # 3 s while the worker is stuck: more than the 2 s the queue holds
            publisher.send_audio(np.full((rate // 2, 2), 0.1, np.float32))
        release.set()

    publisher, collector, _ = run_publisher(body, audio=AudioSettings(sample_rate=rate, codec="aac"))
    assert publisher.audio_samples_dropped == rate
    audio = [t for i, t, _, _ in collector.got if i == 1]
    assert {b - a for a, b in itertools.pairwise(audio)} == {1024}
    # three seconds of audio time (the dropped second as silence), less what the encoder still
    # holds at close (a partial frame, one frame of lookahead) and its priming shift
    assert audio[-1] + 4 * 1024 >= 3 * rate
