"""Files browsers cannot take as they are (HEVC + AAC, H.264 with B-frames), converted once per
file in chunks for all their WebRTC viewers: aiortc viewers decode every picture and a continuous
Opus stream, and /metrics shows each chunk converted once however many viewers watch."""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import av
import numpy as np
import pytest

from media import keyframe_index
from streamd.webrtc.file_chunks import plan
from tests.h264_bits import slice_type
from tests.integration.conftest import ServerProcess, need, start_server, stop_all
from tests.integration.whep_client import WhepClient, h264_units, ordered
from tests.waiting import until

pytestmark = pytest.mark.integration

SECONDS, FPS, TONE = 3, 25, 440
FRAMES = SECONDS * FPS


def _ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", *args], check=True, timeout=120)


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> Path:
    need("ffmpeg")
    root = tmp_path_factory.mktemp("chunk-media")
    lavfi = ["-f", "lavfi", "-i", f"testsrc2=d={SECONDS}:s=320x240:r={FPS}", "-f", "lavfi", "-i",
             f"sine=f={TONE}:d={SECONDS}:r=44100"]  # fmt: skip
    _ffmpeg(*lavfi, "-c:v", "libx265", "-x265-params", f"log-level=error:keyint={FPS}", "-pix_fmt", "yuv420p",
            "-c:a", "aac", "-y", str(root / "hevc-aac.mp4"))  # fmt: skip
    _ffmpeg(*lavfi, "-c:v", "libx264", "-bf", "2", "-g", str(FPS), "-pix_fmt", "yuv420p", "-c:a", "aac",
            "-y", str(root / "bframes-aac.mp4"))  # fmt: skip
    _ffmpeg("-f", "lavfi", "-i", f"sine=f={TONE}:d=2", "-c:a", "libmp3lame", "-y", str(root / "tone.mp3"))
    whole = root / "whole.mp4"
    _ffmpeg(*lavfi, "-c:v", "libx265", "-x265-params", f"log-level=error:keyint={FPS}", "-pix_fmt", "yuv420p",
            "-c:a", "aac", "-movflags", "+faststart", "-y", str(whole))  # fmt: skip
    data = whole.read_bytes()
    (root / "truncated.mp4").write_bytes(data[: len(data) * 6 // 10])  # an interrupted copy
    whole.unlink()
    _ffmpeg("-f", "lavfi", "-i", f"testsrc2=d=2:s=320x240:r={FPS}", "-c:v", "libx265", "-x265-params",
            "log-level=error", "-f", "hevc", "-y", str(root / "raw.hevc"))  # fmt: skip
    return root


@pytest.fixture(scope="module")
def server(media: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    tmp = tmp_path_factory.mktemp("chunk-server")
    proc = start_server(media, tmp)
    yield proc
    stop_all(proc)


def _metrics(server: ServerProcess) -> dict[str, float]:
    with urllib.request.urlopen(server.http("metrics"), timeout=30) as response:
        text = response.read().decode()
    found = re.findall(r"^(streamd_webrtc_file_chunk\w*) (\S+)$", text, re.M)
    return {name: float(value) for name, value in found}


def _chunks(path: Path) -> int:
    return len(plan(keyframe_index.build(path, [0])))  # as the server cuts: by the video alone


def _decoded_pictures(units: list[list[bytes]]) -> int:
    decoder = av.CodecContext.create("h264", "r")
    count = 0
    for unit in units:
        count += len(decoder.decode(av.Packet(b"".join(b"\x00\x00\x00\x01" + n for n in unit))))
    return count + len(decoder.decode(None))


def _assert_baseline(units: list[list[bytes]]) -> None:
    sps = [n for unit in units for n in unit if n[0] & 0x1F == 7]
    assert sps and all(s[1] == 66 for s in sps)  # baseline: the converter's
    kinds = {n[0] & 0x1F for n in units[0]}
    assert {5, 7, 8} <= kinds  # the stream starts with parameter sets and an IDR
    assert all(slice_type(n) % 5 != 1 for unit in units for n in unit if n[0] & 0x1F in (1, 5))  # no B


def _opus_samples(packets: list[tuple[int, int, bool, bytes]]) -> np.ndarray:
    decoder = av.CodecContext.create("opus", "r")
    decoder.sample_rate, decoder.layout = 48000, "stereo"
    pcm = []
    for *_, payload in ordered(packets):
        for frame in decoder.decode(av.Packet(payload)):
            pcm.append(frame.to_ndarray()[0])  # fltp: the left channel
    return np.concatenate(pcm)


async def _watch_to_the_end(
    server: ServerProcess, path: str, viewers: int, kinds: tuple[str, ...] = ("video", "audio")
) -> list[WhepClient]:
    clients = [WhepClient(server.http(f"whep/{path}")) for _ in range(viewers)]
    await asyncio.gather(*(c.start(kinds) for c in clients))
    for client in clients:
        assert client.status == 201 and "opus/48000/2" in client.answer, client.answer
        assert ("H264/90000" in client.answer) == ("video" in kinds), client.answer
    # each viewer's own end (its session's log label), never another test's viewer ending late
    labels = [f"WHEP {(c.location or '').rsplit('/', 1)[-1][:8]} " for c in clients]
    ends = [
        re.compile(re.escape(label) + r"\(.*?\): " + re.escape(f"{path} ended: the file ended"))
        for label in labels
    ]
    await until(lambda: all(e.search(server.log()) for e in ends), "the file's end", 60)
    await asyncio.sleep(0.3)  # the last packets on their way
    return clients


def test_two_viewers_share_one_conversion_of_an_hevc_aac_file(server: ServerProcess, media: Path) -> None:
    """Both decode every picture as baseline H.264 and the whole tone as Opus, without a gap at the
    chunk borders; each chunk was converted once."""
    chunks = _chunks(media / "hevc-aac.mp4")
    assert chunks >= 2  # the test crosses a chunk border
    before = _metrics(server)

    async def run() -> None:
        clients = await _watch_to_the_end(server, "hevc-aac.mp4", 2)
        for client in clients:
            units = h264_units(client.packets["video"])
            _assert_baseline(units)
            assert len(units) == FRAMES and _decoded_pictures(units) == FRAMES
            audio = ordered(client.packets["audio"])
            steps = {(b[1] - a[1]) % 2**32 for a, b in itertools.pairwise(audio)}
            assert steps == {960}, steps  # Opus timestamps continuous at 48 kHz, across chunks
            samples = _opus_samples(audio)
            assert abs(len(samples) - SECONDS * 48000) <= 3 * 960, len(samples)
            _assert_continuous_tone(samples)
            await client.close()

    asyncio.run(run())
    after = _metrics(server)
    converted = after["streamd_webrtc_file_chunks_converted_total"] - before.get(
        "streamd_webrtc_file_chunks_converted_total", 0
    )
    assert converted == chunks, (converted, chunks)


def _assert_continuous_tone(samples: np.ndarray) -> None:
    """The tone at its level in every 10 ms from the first 0.1 s to the last (no gap, no dip at a
    chunk border), and no jump between samples beyond what the tone's slope allows (no click)."""
    body = samples[4800 : len(samples) - 4800]
    windows = body[: len(body) // 480 * 480].reshape(-1, 480)
    rms = np.sqrt((windows**2).mean(axis=1))
    level = float(np.median(rms))
    assert level > 0.05 and rms.min() > 0.7 * level and rms.max() < 1.3 * level, (rms.min(), level, rms.max())
    slope = level * np.sqrt(2) * 2 * np.pi * TONE / 48000
    assert float(np.abs(np.diff(body)).max()) < 2 * slope


def test_a_later_viewer_takes_the_chunks_already_converted(server: ServerProcess, media: Path) -> None:
    chunks = _chunks(media / "hevc-aac.mp4")

    async def run() -> None:
        for client in await _watch_to_the_end(server, "hevc-aac.mp4", 1):
            assert _decoded_pictures(h264_units(client.packets["video"])) == FRAMES
            await client.close()

    first = _metrics(server)
    asyncio.run(run())  # converted by now (the test before, or this first run)
    second = _metrics(server)
    asyncio.run(run())
    third = _metrics(server)
    name = "streamd_webrtc_file_chunks_converted_total"
    assert second[name] - first.get(name, 0) <= chunks
    assert third[name] == second[name]  # nothing converted again
    hits = "streamd_webrtc_file_chunk_cache_hits_total"
    assert third[hits] - second[hits] >= chunks


def test_h264_with_b_frames_becomes_baseline_with_every_picture(server: ServerProcess) -> None:
    async def run() -> None:
        (client,) = await _watch_to_the_end(server, "bframes-aac.mp4", 1)
        units = h264_units(client.packets["video"])
        _assert_baseline(units)
        assert len(units) == FRAMES and _decoded_pictures(units) == FRAMES
        stamps = [p[1] for p in ordered(client.packets["video"]) if p[2]]
        assert stamps == sorted(stamps) and len(set(stamps)) == FRAMES  # presentation order
        _assert_continuous_tone(_opus_samples(client.packets["audio"]))
        await client.close()

    asyncio.run(run())


def test_a_converted_file_seeks_over_the_data_channel(server: ServerProcess) -> None:
    """A seek lands on a keyframe of the chunk holding the target; what follows decodes."""

    async def run() -> None:
        client = WhepClient(server.http("whep/hevc-aac.mp4"))
        channel = client.pc.createDataChannel("control")
        states: list[dict] = []
        channel.on("message", lambda m: states.append(json.loads(m)))
        await client.start()
        assert client.status == 201, client.answer
        await until(lambda: any(s.get("type") == "position" for s in states), "a position", 20)
        channel.send(json.dumps({"type": "pause"}))
        await until(lambda: states[-1].get("paused") is True, "paused", 10)
        seen = len(client.packets["video"])
        channel.send(json.dumps({"type": "seek", "position": 2.2}))
        await until(lambda: states[-1].get("position", 0) >= 1.5, "the seek's position", 20)
        channel.send(json.dumps({"type": "play"}))
        await until(
            lambda: any(s.get("position", 0) >= 2.3 for s in states), "a position past the target", 20
        )
        after = client.packets["video"][seen:]
        units = h264_units(after)
        assert units and any(n[0] & 0x1F == 5 for n in units[0])  # restarts on an IDR
        assert _decoded_pictures(units) >= len(units) - 1
        await client.delete()
        await client.close()

    asyncio.run(run())


def test_a_raw_stream_without_an_index_is_converted_for_its_viewer(server: ServerProcess) -> None:
    """No keyframe index to cut chunks by (no timestamps): the viewer converts as it plays, as before."""

    async def run() -> None:
        client = WhepClient(server.http("whep/raw.hevc"))
        await client.start(("video",))
        assert client.status == 201 and "H264/90000" in client.answer, client.answer
        await until(lambda: sum(p[2] for p in client.packets["video"]) >= 25, "25 pictures", 30)
        assert _decoded_pictures(h264_units(client.packets["video"])) >= 24
        await client.close()

    asyncio.run(run())
    assert "converted as it plays, for this viewer alone" in server.log()


def test_a_truncated_file_ends_its_viewer_cleanly(server: ServerProcess) -> None:
    """The conversion stops where the file does: the viewer gets what is there, then the end."""

    async def run() -> None:
        (client,) = await _watch_to_the_end(server, "truncated.mp4", 1)
        pictures = _decoded_pictures(h264_units(client.packets["video"]))
        assert 0 < pictures < FRAMES
        await client.close()

    asyncio.run(run())
    assert re.search(
        r"truncated\.mp4 ended: the file ended", server.log()
    )  # (a cut mid-packet is logged too)
    assert _metrics(server)["streamd_webrtc_file_chunks_converted_total"] > 0  # the server goes on


def test_an_mp3_file_becomes_one_continuous_opus_stream(server: ServerProcess) -> None:
    """Audio only: chunks cut at packets, Opus frames on the same grid whichever chunk made them."""

    async def run() -> None:
        (client,) = await _watch_to_the_end(server, "tone.mp3", 1, ("audio",))
        audio = ordered(client.packets["audio"])
        assert {(b[1] - a[1]) % 2**32 for a, b in itertools.pairwise(audio)} == {960}
        samples = _opus_samples(audio)
        assert abs(len(samples) - 2 * 48000) <= 3 * 960, len(samples)
        _assert_continuous_tone(samples)
        await client.close()

    asyncio.run(run())
