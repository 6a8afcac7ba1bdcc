"""Per-path ``transcode_audio``: audio without a payload format (Vorbis, FLAC) is re-encoded to
AAC or Opus with PyAV on the fly, so players get sound instead of a track left out."""

from __future__ import annotations

import subprocess

import av
import pytest

from tests.integration.conftest import ServerProcess, need, start_server
from tests.rtsp_client import RawRtspClient

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def transcode_server(tmp_path_factory: pytest.TempPathFactory):
    need("ffmpeg")
    media = tmp_path_factory.mktemp("transcode-media")
    for name, args in (
        ("vorbis.ogg", ["-f", "lavfi", "-i", "sine=d=2:sample_rate=44100", "-ac", "2", "-c:a", "libvorbis"]),
        ("tone.flac", ["-f", "lavfi", "-i", "sine=d=2:sample_rate=22050", "-c:a", "flac"]),
        ("plain.flac", ["-f", "lavfi", "-i", "sine=d=1", "-c:a", "flac"]),
    ):
        subprocess.run(
            ["ffmpeg", "-nostdin", "-loglevel", "error", *args, "-y", str(media / name)], check=True
        )
    config = media / "streamd.toml"
    config.write_text(
        '[paths."vorbis.ogg"]\ntranscode_audio = "aac"\n[paths."tone.flac"]\ntranscode_audio = "opus"\n'
    )
    proc = start_server(media, tmp_path_factory.mktemp("transcode-server"), "--config", str(config))
    yield proc
    proc.stop()


@pytest.mark.parametrize(
    ("name", "codec", "rate"), [("vorbis.ogg", "aac", 44100), ("tone.flac", "opus", 48000)]
)
@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_players_get_the_whole_transcoded_track(
    transcode_server: ServerProcess, name: str, codec: str, rate: int, transport: str
) -> None:
    with av.open(transcode_server.url(name), options={"rtsp_transport": transport}, timeout=30) as container:
        stream = container.streams.audio[0]
        assert stream.codec_context.name == codec
        samples = sum(frame.samples for frame in container.decode(stream))
    assert abs(samples / rate - 2.0) < 0.1  # two seconds of sound, none lost


async def test_sdp_announces_the_target_codec(transcode_server: ServerProcess) -> None:
    c = await RawRtspClient("127.0.0.1", transcode_server.port).connect()
    body = (await c.request("DESCRIBE", c.url("vorbis.ogg"))).body.decode()
    assert "mpeg4-generic/44100/2" in body and "config=" in body
    body = (await c.request("DESCRIBE", c.url("tone.flac"))).body.decode()
    assert "opus/48000/2" in body
    # without the setting, FLAC still has no payload format: 415 with the reason
    assert (await c.request("DESCRIBE", c.url("plain.flac"))).status == 415
    await c.close()
