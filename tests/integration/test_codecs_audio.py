"""Audio payload formats against real clients: Opus, G.711, L16/L24, MPEG audio, AC-3.

Each clip is served by one server and received by ffmpeg (``-c copy``), PyAV and GStreamer
(``rtspsrc`` + the RTP depayloader), over UDP and TCP, all sessions at once. Every client hands
back two things: the payload bytes it depacketized, which must equal the source's packets
exactly (for PCM: the source samples in network byte order), and what its decoder made of them,
whose sample count must match decoding the source packets.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import av
import pytest

from streamd.rtp.payload.pcm import swap_bytes
from tests import mediagen
from tests.integration.codec_matrix import record
from tests.integration.conftest import ARTIFACTS, ServerProcess, start_server
from tests.integration.gst import KEEP_ALL, run_pipeline
from tests.rtsp_client import RawRtspClient
from tests.shared_files import made_once

pytestmark = pytest.mark.integration

CLIENTS = ("ffmpeg", "pyav", "gstreamer")
TRANSPORTS = ("udp", "tcp")


@dataclass(frozen=True)
class Clip:
    """A generated file, how GStreamer depayloads it, and how its samples travel."""

    name: str
    encoder: str  # PyAV encoder for mediagen.make_audio
    matrix: str | None  # codec-matrix row it stands for; None for extra variants
    depay: str  # GStreamer depayloader
    sample_rate: int = 48000
    channels: int = 2
    bit_rate: int | None = None
    sample_bytes: int = 0  # PCM: bytes per sample, to turn file order into wire order; 0 compressed
    swap: bool = False  # little-endian PCM goes out big-endian
    muxer_options: dict[str, str] = field(default_factory=dict)

    def wire(self, data: bytes) -> bytes:
        return swap_bytes(data, self.sample_bytes) if self.swap else data


CLIPS = (
    Clip("opus.webm", "libopus", "opus", "rtpopusdepay"),
    Clip("opus-mono.ogg", "libopus", None, "rtpopusdepay", channels=1),
    Clip("mulaw.wav", "pcm_mulaw", "pcm_mulaw", "rtppcmudepay", 8000, 1, sample_bytes=1),
    Clip("alaw.wav", "pcm_alaw", "pcm_alaw", "rtppcmadepay", 8000, 1, sample_bytes=1),
    Clip("s16-44100.wav", "pcm_s16le", "pcm_s16le", "rtpL16depay", 44100, 2, sample_bytes=2, swap=True),
    Clip("s16-22050-mono.wav", "pcm_s16le", None, "rtpL16depay", 22050, 1, sample_bytes=2, swap=True),
    Clip("s24.wav", "pcm_s24le", "pcm_s24le", "rtpL24depay", 48000, 2, sample_bytes=3, swap=True),
    # with a LAME tag (gapless info: start_time 0.025 s, first packet at 0) like real MP3 files
    Clip("tone.mp3", "libmp3lame", "mp3", "rtpmpadepay", 44100, 2),
    Clip("tone.mp2", "mp2", "mp2", "rtpmpadepay", 48000, 2),
    # 5.1 at 448 kbit/s: 1792-byte frames, fragmented at the 1400-byte payload limit
    Clip("tone.ac3", "ac3", "ac3", "rtpac3depay", 48000, 6, bit_rate=448000),
)


@dataclass(frozen=True)
class Source:
    wire: bytes  # what a depacketizer must hand back, all packets concatenated
    samples: int  # per channel, from decoding the source packets without container hints


@dataclass(frozen=True)
class Received:
    payload: bytes
    samples: int


def reference(clip: Clip, path: Path) -> Source:
    """The file's packets as PyAV demuxes them, and a plain decoder's output for them."""
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        packets = [bytes(p) for p in container.demux(stream) if p.size]
        codec = stream.codec_context.name
    data = b"".join(packets)
    if clip.sample_bytes:  # PCM: one sample per channel per frame, nothing to decode
        return Source(clip.wire(data), len(data) // (clip.sample_bytes * clip.channels))
    return Source(data, decoded_samples(codec, packets))


def decoded_samples(codec: str, packets: list[bytes]) -> int:
    """Samples a fresh decoder outputs for ``packets``: no extradata, no skip hints, as over RTP."""
    decoder = av.CodecContext.create(codec, "r")
    count = sum(f.samples for p in packets for f in decoder.decode(av.Packet(p)))
    return count + sum(f.samples for f in decoder.decode(None))


# --- clients: each returns what it depacketized and how many samples it decoded -------------------


def run(args: list[str], timeout: float = 60) -> None:
    result = subprocess.run(args, capture_output=True, timeout=timeout)
    assert result.returncode == 0, (args, result.stderr.decode(errors="replace")[-2000:])


def receive_ffmpeg(url: str, transport: str, clip: Clip, out: Path) -> Received:
    raw, pcm = out / "ffmpeg.bin", out / "ffmpeg.pcm"
    args = ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-rtsp_transport", transport]
    args += ["-i", url, "-map", "0:a", "-c", "copy", "-f", "data", "-y", str(raw)]
    args += ["-map", "0:a", "-ac", str(clip.channels), "-f", "s16le", "-y", str(pcm)]
    run(args)
    return Received(raw.read_bytes(), pcm.stat().st_size // (2 * clip.channels))


def receive_pyav(url: str, transport: str, clip: Clip, out: Path) -> Received:
    payload, samples = bytearray(), 0
    with av.open(url, options={"rtsp_transport": transport}, timeout=30) as container:
        stream = container.streams.audio[0]
        for packet in container.demux(stream):
            if packet.size:
                payload += bytes(packet)
            samples += sum(f.samples for f in stream.codec_context.decode(packet))
    return Received(bytes(payload), samples)


def receive_gstreamer(url: str, transport: str, clip: Clip, out: Path) -> Received:
    raw, pcm = out / "gst.bin", out / "gst.pcm"
    pipeline = (
        f"rtspsrc location={url} protocols={transport} ! {clip.depay} ! {KEEP_ALL} ! tee name=t "
        f"t. ! queue ! filesink location={raw} "
        f"t. ! queue ! decodebin ! audioconvert ! audio/x-raw,format=S16LE,channels={clip.channels} "
        f"! filesink location={pcm}"
    )
    run_pipeline(pipeline)
    return Received(raw.read_bytes(), pcm.stat().st_size // (2 * clip.channels))


RECEIVERS: dict[str, Callable[[str, str, Clip, Path], Received]] = {
    "ffmpeg": receive_ffmpeg,
    "pyav": receive_pyav,
    "gstreamer": receive_gstreamer,
}
TOOLS = {"ffmpeg": "ffmpeg", "pyav": None, "gstreamer": "gst-launch-1.0"}


# --- one run of every clip x client x transport, shared by the tests below ------------------------


@pytest.fixture(scope="module")
def audio_media(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The clips, made once per run: by the parallel pass's SDP test, for the serial matrix."""
    return made_once(tmp_path_factory, "codec-audio-clips-1", _make_clips)


def _make_clips(root: Path) -> None:
    for clip in CLIPS:
        mediagen.make_audio(
            root / clip.name,
            clip.encoder,
            seconds=1,
            sample_rate=clip.sample_rate,
            channels=clip.channels,
            bit_rate=clip.bit_rate,
            muxer_options=clip.muxer_options,
        )


@pytest.fixture(scope="module")
def audio_server(audio_media: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    proc = start_server(audio_media, tmp_path_factory.mktemp("audio-server"))
    yield proc
    code = proc.stop()
    log = proc.log()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shutil.copy(proc.log_path, ARTIFACTS / f"audio-{proc.log_path.name}")
    assert "Traceback" not in log, log
    assert code == 0, log


@pytest.fixture(scope="module")
def received(
    audio_server: ServerProcess, sources: dict[str, Source], tmp_path_factory: pytest.TempPathFactory
) -> dict[tuple[str, str, str], Received | str]:
    """Every available client over both transports for every clip, in parallel: result or error."""
    jobs = [
        (clip, client, transport)
        for clip in CLIPS
        for client in CLIENTS
        for transport in TRANSPORTS
        if TOOLS[client] is None or shutil.which(TOOLS[client])
    ]

    def attempt(clip: Clip, client: str, transport: str) -> Received | str:
        out = tmp_path_factory.mktemp(f"{client}-{transport}-{clip.name}")
        try:
            return RECEIVERS[client](audio_server.url(clip.name), transport, clip, out)
        except (AssertionError, OSError, subprocess.TimeoutExpired, av.FFmpegError) as exc:
            return f"{type(exc).__name__}: {exc}"

    def receive(job: tuple[Clip, str, str]) -> Received | str:
        """One retry over UDP only: a datagram lost on a loaded machine is not a format bug."""
        result = attempt(*job)
        clip, _, transport = job
        if transport == "udp" and (isinstance(result, str) or result.payload != sources[clip.name].wire):
            result = attempt(*job)
        return result

    # 20 at once: each client mostly waits for its 1 s clip to play in real time (the 60 runs take
    # ~7 s of CPU), so 6 at a time took 13.5 s, 20 take 6 s
    with ThreadPoolExecutor(max_workers=20) as pool:
        results = list(pool.map(receive, jobs))
    return {
        (clip.name, client, transport): r for (clip, client, transport), r in zip(jobs, results, strict=True)
    }


@pytest.fixture(scope="module")
def sources(audio_media: Path) -> dict[str, Source]:
    return {clip.name: reference(clip, audio_media / clip.name) for clip in CLIPS}


# Decoders may trim an encoder delay they know of or pad a last frame: at most this many samples.
_DECODE_SLACK = {"ffmpeg": 0, "pyav": 0, "gstreamer": 2048}


# serial: it runs several clients at once over UDP itself, and a datagram lost to parallel load
# fails a bit-exact check (loss has its own tests)
@pytest.mark.serial
@pytest.mark.parametrize("client", CLIENTS)
@pytest.mark.parametrize("clip", CLIPS, ids=lambda c: c.name)
def test_payload_is_bit_exact_and_decodes(
    clip: Clip,
    client: str,
    received: dict[tuple[str, str, str], Received | str],
    sources: dict[str, Source],
) -> None:
    if TOOLS[client] and not shutil.which(TOOLS[client]):
        pytest.skip(f"{TOOLS[client]} is not installed (scripts/test installs it)")
    source = sources[clip.name]
    for transport in TRANSPORTS:
        got = received[clip.name, client, transport]
        assert not isinstance(got, str), f"{client}/{transport}: {got}"
        assert got.payload == source.wire, (
            f"{client}/{transport}: {len(got.payload)} bytes received, {len(source.wire)} sent"
        )
        assert abs(got.samples - source.samples) <= _DECODE_SLACK[client], (
            f"{client}/{transport}: decoded {got.samples} samples, source {source.samples}"
        )
        if clip.matrix:
            record(clip.matrix, client, transport, "bit-exact")


def test_sdp_of_every_clip(audio_server: ServerProcess) -> None:
    """The m= and rtpmap lines clients see: RFC 3551 static types where one exists, Opus 48000/2."""
    expected = {
        "opus.webm": ("96", "opus/48000/2", "sprop-stereo=1"),
        "opus-mono.ogg": ("96", "opus/48000/2", "sprop-stereo=0"),
        "mulaw.wav": ("0", "PCMU/8000", None),
        "alaw.wav": ("8", "PCMA/8000", None),
        "s16-44100.wav": ("10", "L16/44100/2", None),
        "s16-22050-mono.wav": ("96", "L16/22050/1", None),
        "s24.wav": ("96", "L24/48000/2", None),
        "tone.mp3": ("14", "MPA/90000", None),
        "tone.mp2": ("14", "MPA/90000", None),
        "tone.ac3": ("96", "AC3/48000/6", None),
    }

    async def describe_all() -> dict[str, str]:
        client = await RawRtspClient("127.0.0.1", audio_server.port).connect()
        try:
            return {
                name: (await client.request("DESCRIBE", client.url(name))).body.decode() for name in expected
            }
        finally:
            await client.close()

    for name, sdp in asyncio.run(describe_all()).items():
        pt, rtpmap, fmtp = expected[name]
        assert f"m=audio 0 RTP/AVP {pt}\r\n" in sdp, sdp
        assert f"a=rtpmap:{pt} {rtpmap}\r\n" in sdp, sdp
        assert (f"a=fmtp:{pt} {fmtp}\r\n" in sdp) if fmtp else "a=fmtp:" not in sdp, sdp
