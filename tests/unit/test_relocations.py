"""Where requests go while paths are moved or the server drains (``streamd.live.redirect``)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streamd.config import ConfigError, ServerConfig
from streamd.live.redirect import Relocations, RoundRobin, check_targets


def test_a_move_wins_over_configuration_and_drain() -> None:
    places = Relocations()
    assert places.targets("cam", ()) == () and not places.draining
    assert places.targets("cam", ("rtsp://conf/cam",)) == ("rtsp://conf/cam",)
    places.drain(["rtsp://edge1:8554/", "rtsp://edge2:8554"])
    assert places.draining
    assert places.targets("a dir/clip.mp4", ()) == (
        "rtsp://edge1:8554/a%20dir/clip.mp4",
        "rtsp://edge2:8554/a%20dir/clip.mp4",
    )
    assert places.targets("cam", ("rtsp://conf/cam",)) == ("rtsp://conf/cam",)
    places.move("cam", ["rtsp://moved/cam"])
    assert places.targets("cam", ("rtsp://conf/cam",)) == ("rtsp://moved/cam",)
    places.move("cam", [])
    assert "cam" not in places.moved


def test_draining_to_nowhere_sends_nobody_anywhere() -> None:
    places = Relocations()
    places.drain([])
    assert places.draining and places.targets("x", ()) == ()


@pytest.mark.parametrize(
    "targets",
    [["http://x/"], ["rtsp://"], ["rtsp://x/\r\nEvil: 1"], ["rtsp://x/a b"], [1], "rtsp://x/"],
)
def test_bad_targets_are_refused(targets: object) -> None:
    with pytest.raises(ValueError):
        check_targets(targets)  # type: ignore[arg-type]


@given(st.lists(st.text(max_size=40), max_size=4))
def test_check_targets_accepts_only_clean_rtsp_urls(targets: list[str]) -> None:
    try:
        checked = check_targets(targets)
    except ValueError:
        return
    for url in checked:
        assert url.startswith(("rtsp://", "rtsps://"))
        assert not any(ch in url for ch in "\r\n\0 ")


def test_round_robin_cycles_per_path() -> None:
    turns = RoundRobin()
    targets = ("a", "b")
    assert [turns.next("p", targets) for _ in range(3)] == ["a", "b", "a"]
    assert turns.next("q", targets) == "a"


def test_admin_networks() -> None:
    config = ServerConfig()
    assert config.allows_admin("127.0.0.1") and config.allows_admin("::1")
    assert config.allows_admin("::ffff:127.0.0.1")
    assert not config.allows_admin("192.168.1.2") and not config.allows_admin("")
    lan = ServerConfig(admin_networks=["192.168.0.0/16"])
    assert lan.allows_admin("192.168.1.2") and not lan.allows_admin("127.0.0.1")
    with pytest.raises(ConfigError):
        ServerConfig(admin_networks=["not a network"])
    with pytest.raises(ConfigError):
        ServerConfig(admin_networks="127.0.0.1")  # type: ignore[arg-type]
