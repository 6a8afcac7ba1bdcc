"""The RTSP session state machine, without sockets."""

from __future__ import annotations

import pytest

from streamd.rtsp.errors import RtspError
from streamd.rtsp.headers.transport import TransportSpec
from streamd.rtsp.session import RtspSession, State, TrackSetup, new_session_id


def setup(index: int, lower: str = "UDP") -> TrackSetup:
    return TrackSetup(index, f"trackID={index}", TransportSpec(profile="RTP/AVP", lower_transport=lower))


def test_ids_are_unguessable_and_valid() -> None:
    ids = {new_session_id() for _ in range(1000)}
    assert len(ids) == 1000
    assert all(len(i) == 16 and i.isalnum() for i in ids)


def test_normal_lifecycle() -> None:
    s = RtspSession("test", 60)
    assert s.state is State.INIT
    s.setup(setup(0), lower_transport="UDP")
    s.setup(setup(1), lower_transport="UDP")
    assert s.state is State.READY
    s.play()
    assert s.state is State.PLAYING
    assert s.pause() is True
    assert s.state is State.READY
    assert s.pause() is False  # PAUSE in READY: allowed, changes nothing
    s.play()
    assert s.teardown() is True
    assert s.state is State.INIT and not s.tracks


@pytest.mark.parametrize("action", ["play", "pause"])
def test_methods_before_setup_are_455(action: str) -> None:
    s = RtspSession("test", 60)
    with pytest.raises(RtspError) as err:
        getattr(s, action)()
    assert err.value.status == 455


def test_adding_a_track_while_playing_is_455() -> None:
    s = RtspSession("test", 60)
    s.setup(setup(0), lower_transport="UDP")
    s.play()
    with pytest.raises(RtspError) as err:
        s.setup(setup(1), lower_transport="UDP")
    assert err.value.status == 455


def test_mixed_transports_are_refused() -> None:
    s = RtspSession("test", 60)
    s.setup(setup(0, "UDP"), lower_transport="UDP")
    with pytest.raises(RtspError) as err:
        s.setup(setup(1, "TCP"), lower_transport="TCP")
    assert err.value.status == 461
    assert s.lower_transport == "UDP"


def test_per_track_teardown() -> None:
    s = RtspSession("test", 60)
    s.setup(setup(0), lower_transport="UDP")
    s.setup(setup(1), lower_transport="UDP")
    assert s.teardown(1) is False
    assert set(s.tracks) == {0}
    with pytest.raises(RtspError):
        s.teardown(5)
    assert s.teardown(0) is True
