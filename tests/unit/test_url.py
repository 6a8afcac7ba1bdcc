from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streamd.rtsp.errors import RtspError
from streamd.rtsp.url import base_url, request_path, split_control


@pytest.mark.parametrize(
    ("uri", "path"),
    [
        ("rtsp://127.0.0.1:8554/test", "test"),
        ("rtsp://h/test/", "test"),
        ("rtsp://h:1/holiday/beach.mp4?x=1", "holiday/beach.mp4"),
        ("rtsp://h/sub%20dir/moov%20end.mp4", "sub dir/moov end.mp4"),
        ("/test", "test"),
        ("*", ""),
        ("rtsp://[::1]:8554/a.mkv", "a.mkv"),
    ],
)
def test_request_path(uri: str, path: str) -> None:
    assert request_path(uri) == path


def test_split_control() -> None:
    assert split_control("a/b.mp4/trackID=12") == ("a/b.mp4", "trackID=12")
    assert split_control("test") == ("test", None)
    assert split_control("trackID=1") == ("", "trackID=1")


def test_base_url() -> None:
    assert base_url("rtsp://h:8554/a/b.mp4") == "rtsp://h:8554/a/b.mp4/"
    assert base_url("rtsp://h:8554/a/b.mp4/") == "rtsp://h:8554/a/b.mp4/"


def test_bad_uris() -> None:
    with pytest.raises(RtspError) as err:
        request_path("rtsp://h/" + "a" * 5000)
    assert err.value.status == 414
    with pytest.raises(RtspError):
        request_path("ftp://h/x")


@given(st.text(max_size=300))
def test_request_path_never_crashes(uri: str) -> None:
    with contextlib.suppress(RtspError):
        request_path(uri)
