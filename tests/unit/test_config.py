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


def test_publish_accepts_publishers_and_record_means_recording(tmp_path: Path) -> None:
    file = tmp_path / "c.toml"
    file.write_text(
        'record_format = "mkv"\nrecord_segment = 30\nrecord_dir = "~/rec"\n'
        '[paths."live/cam1"]\nrecord = false\n'
        '[paths."live/cam2"]\nrecord = true\nrecord_segment = 10\nrecord_format = "mp4"\n'
        '[paths."cams/*"]\npublish = true\nrecord = true\n'
        '[paths."live/closed"]\npublish = false\n'
        '[paths."relay/cam"]\nsource = "rtsp://camera.example:8554/stream"\nrecord = true\n'
    )
    config = load_config(file, {})
    assert config.record_format == "mkv" and config.record_segment == 30
    assert config.record_dir == Path("~/rec").expanduser()
    assert config.accepts_publisher("live/cam1") and not config.path_settings("live/cam1").record
    assert config.path_settings("live/cam2") == PathSettings(
        record=True, record_segment=10, record_format="mp4"
    )
    assert config.accepts_publisher("cams/a") and config.path_settings("cams/a").record
    assert not config.accepts_publisher("live/closed")
    assert not config.accepts_publisher("other") and config.accepts_publisher("live/other")
    assert not config.accepts_publisher("relay/cam") and config.path_settings("relay/cam").record
    assert load_config(None, {"record_format": "mkv", "record_dir": "x"}).record_dir == Path("x")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[paths.a]\nrecord = "yes"', "record must be true or false"),
        ("[paths.a]\npublish = 1", "publish must be true or false"),
        ('[paths.a]\nredirect = ["rtsp://b/a"]\nrecord = true', "redirects has nothing to record"),
        ('[paths.a]\nsource = "rtsp://b/a"\npublish = true', "cannot also redirect or accept publishers"),
        ('[paths.a]\nrecord_format = "avi"', "record_format must be one of mp4, mkv"),
        ("[paths.a]\nrecord_segment = 0", "record_segment must be between"),
        ('record_segment = "60"', "record_segment must be between"),
        ('record_format = "ts"', "record_format"),
        ("[paths.a]\nrecord_seconds = 5", "unknown setting"),
        ("recording = true", "unknown setting"),
    ],
)
def test_bad_recording_settings(tmp_path: Path, text: str, message: str) -> None:
    file = tmp_path / "c.toml"
    file.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_config(file, {})
