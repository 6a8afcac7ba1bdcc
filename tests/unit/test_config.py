from __future__ import annotations

from pathlib import Path

import pytest

from streamd.config import ConfigError, PathSettings, ServerConfig, load_config


def test_defaults_work() -> None:
    config = load_config(None, {})
    assert config == ServerConfig()
    assert config.rtsp_port == 8554 and config.session_timeout == 60 and config.media == Path("media")


def test_file_then_flags(tmp_path: Path) -> None:
    file = tmp_path / "c.toml"
    file.write_text(
        'rtsp-port = 9554\nsession_timeout = 30\nmedia = "~/videos"\n[paths."a/b.mp4"]\nloop = true\n'
    )
    config = load_config(file, {"rtsp_port": 10554, "host": None})
    assert config.rtsp_port == 10554  # the flag wins
    assert config.session_timeout == 30
    assert config.media == Path("~/videos").expanduser()
    assert config.path_settings("a/b.mp4") == PathSettings(loop=True)
    assert config.path_settings("other").loop is None


@pytest.mark.parametrize(
    "text",
    [
        "bogus = 1",
        "rtp_port = 8001",
        "session_timeout = 1",
        "[paths.x]\nfoo = 1",
        "rtsp_port = ",
        "udp = false\ntcp = false",
    ],
)
def test_bad_config(tmp_path: Path, text: str) -> None:
    file = tmp_path / "c.toml"
    file.write_text(text)
    with pytest.raises(ConfigError):
        load_config(file, {})


def test_path_modes_and_glob_patterns(tmp_path: Path) -> None:
    file = tmp_path / "c.toml"
    file.write_text('[paths."movies/*.avi"]\nmode = "mpegts"\n[paths."movies/special.avi"]\nloop = true\n')
    config = load_config(file, {})
    assert config.path_settings("movies/a.avi").mode == "mpegts"
    assert config.path_settings("movies/special.avi") == PathSettings(loop=True)  # exact entry first
    assert config.path_settings("other/a.avi").mode == "tracks"
    file.write_text('[paths."x"]\nmode = "bogus"\n')
    with pytest.raises(ConfigError, match="mode must be one of"):
        load_config(file, {})


def test_transcode_audio_setting(tmp_path: Path) -> None:
    file = tmp_path / "c.toml"
    file.write_text('[paths."*.ogg"]\ntranscode_audio = "opus"\n')
    assert load_config(file, {}).path_settings("a.ogg").transcode_audio == "opus"
    file.write_text('[paths."*.ogg"]\ntranscode_audio = "mp3"\n')
    with pytest.raises(ConfigError, match="transcode_audio"):
        load_config(file, {})
