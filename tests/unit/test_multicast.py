"""Multicast without sockets: the configured range, group/port allocation, config keys, the
shared sender's bookkeeping (SETUP replies, receivers' reports) and the SDP a player joins from."""

from __future__ import annotations

import contextlib
import ipaddress
from pathlib import Path

import pytest
from aiortc.rtp import RtcpByePacket, RtcpReceiverInfo, RtcpRrPacket
from hypothesis import given, settings
from hypothesis import strategies as st

from sdp import parse as parse_sdp
from streamd.cli import build_parser
from streamd.config import ConfigError, PathSettings, ServerConfig, load_config
from streamd.live.announced import announced_tracks
from streamd.live.hub import LivePath
from streamd.live.live_presentation import live_presentation
from streamd.live.multicast import MulticastService
from streamd.live.multicast_groups import GroupPool, MulticastRange, PoolExhausted
from streamd.rtsp.errors import RtspError
from streamd.rtsp.headers import format_transport, parse_transport

ANNOUNCED = (
    "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=cam\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    "m=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n"
    "a=fmtp:96 packetization-mode=1;sprop-parameter-sets=Z/QADZGWQFB+wEQAAAMABAAAAwDIPFCpIA==,aOvDxEhE\r\n"
    "a=control:streamid=0\r\n"
    "m=audio 0 RTP/AVP 97\r\na=rtpmap:97 MPEG4-GENERIC/44100/1\r\n"
    "a=fmtp:97 profile-level-id=1;mode=AAC-hbr;sizelength=13;indexlength=3;indexdeltalength=3;"
    "config=1208\r\na=control:streamid=1\r\n"
)


def spec(network: str = "239.255.42.0/30", ports: tuple[int, int] = (40000, 40007)) -> MulticastRange:
    return MulticastRange.parse(network, ports, 16)


# --- the range -------------------------------------------------------------------------------


def test_range_parses_and_checks() -> None:
    s = MulticastRange.parse("239.255.42.7/24", [40001, 40010], 1)  # host bits and an odd start are fine
    assert str(s.network) == "239.255.42.0/24" and s.first_port == 40002 and s.pairs == 4 and s.ttl == 1
    assert s.contains("239.255.42.200") and not s.contains("239.255.43.1") and not s.contains("nonsense")


@pytest.mark.parametrize(
    ("network", "ports", "ttl", "message"),
    [
        ("10.0.0.0/8", (40000, 40999), 16, "not inside 224.0.0.0/4"),
        ("224.0.0.0/16", (40000, 40999), 16, "224.0.0.0/24"),
        ("239.255.42.0/33", (40000, 40999), 16, "not an IPv4 network"),
        ("ff15::/16", (40000, 40999), 16, "not an IPv4 network"),
        ("239.255.42.0/24", (40000, 40000), 16, "first < last"),
        ("239.255.42.0/24", (80, 90), 16, "1024"),
        ("239.255.42.0/24", (40001, 40002), 16, "no even/odd pair"),
        ("239.255.42.0/24", (40000,), 16, "two port numbers"),
        ("239.255.42.0/24", (40000, 40999), 0, "1-255"),
        ("239.255.42.0/24", (40000, 40999), True, "1-255"),
    ],
)
def test_bad_ranges(network: str, ports: tuple[int, ...], ttl: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        MulticastRange.parse(network, ports, ttl)  # type: ignore[arg-type]


# --- allocation ------------------------------------------------------------------------------


def test_allocation_is_stable_distinct_and_released() -> None:
    pool = GroupPool(spec())
    a = pool.allocate("live/a", [0, 1])
    assert pool.allocate("live/a", [0, 1]) is a
    assert GroupPool(spec()).allocate("live/a", [0, 1]) == a, "the same choice after a restart"
    b = pool.allocate("live/b", [0, 1])
    assert a.group != b.group and not set(a.ports.values()) & set(b.ports.values())
    assert all(p % 2 == 0 for p in (*a.ports.values(), *b.ports.values()))
    assert sorted(a.ports) == [0, 1] and a.ports[1] == a.ports[0] + 2
    with pytest.raises(PoolExhausted):
        pool.allocate("live/c", [0])  # four pairs, all used by two 2-track paths
    pool.release("live/a")
    assert pool.get("live/a") is None
    c = pool.allocate("live/c", [0, 1])
    assert c.group != b.group and len(pool) == 2


def test_a_path_with_a_new_track_is_reallocated() -> None:
    pool = GroupPool(spec())
    pool.allocate("live/a", [0])
    grown = pool.allocate("live/a", [0, 1])
    assert sorted(grown.ports) == [0, 1] and len(pool) == 1


def test_groups_run_out_before_ports() -> None:
    pool = GroupPool(spec("239.255.42.1/32", (40000, 40999)))
    pool.allocate("live/a", [0])
    with pytest.raises(PoolExhausted, match="groups"):
        pool.allocate("live/b", [0])


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.booleans(), st.sampled_from(["a", "b", "c", "d", "e", "ü/ß"]), st.integers(1, 3)),
        max_size=40,
    )
)
def test_allocations_never_overlap(operations: list[tuple[bool, str, int]]) -> None:
    s = spec("239.255.42.0/29", (40000, 40011))
    pool = GroupPool(s)
    for allocate, path, tracks in operations:
        if allocate:
            with contextlib.suppress(PoolExhausted):
                pool.allocate(path, list(range(tracks)))
        else:
            pool.release(path)
        held = [a for p in ("a", "b", "c", "d", "e", "ü/ß") if (a := pool.get(p)) is not None]
        groups = [a.group for a in held]
        ports = [p for a in held for p in a.ports.values()]
        assert len(groups) == len(set(groups)) and len(ports) == len(set(ports))
        assert all(ipaddress.IPv4Address(g) in s.network for g in groups)
        assert all(s.first_port <= p and p + 1 <= s.last_port and p % 2 == 0 for p in ports)


# --- configuration ---------------------------------------------------------------------------


def test_config_keys_and_flags(tmp_path: Path) -> None:
    file = tmp_path / "c.toml"
    file.write_text(
        'multicast_range = "239.1.2.0/28"\nmulticast_ports = [50000, 50099]\nmulticast_ttl = 4\n'
        '[paths."live/cam"]\nmulticast = true\n'
    )
    config = load_config(file, {"multicast_ttl": 2})
    assert config.multicast_ports == (50000, 50099) and config.multicast_ttl == 2
    assert config.path_settings("live/cam") == PathSettings(multicast=True)
    assert config.multicast_spec() == MulticastRange.parse("239.1.2.0/28", (50000, 50099), 2)
    assert ServerConfig(multicast_range="").multicast_spec() is None
    assert ServerConfig().multicast_spec() is not None, "on by default, in an organisation-local range"
    args = build_parser().parse_args(["serve", "--multicast-ports", "41000-41009", "--multicast-range", ""])
    assert args.multicast_ports == (41000, 41009) and args.multicast_range == ""


@pytest.mark.parametrize(
    "text", ['multicast_range = "10.0.0.0/8"', "multicast_ports = 40000", "multicast_ttl = 300"]
)
def test_bad_multicast_config(tmp_path: Path, text: str) -> None:
    file = tmp_path / "c.toml"
    file.write_text(text)
    with pytest.raises(ConfigError):
        load_config(file, {})


# --- the service, without sending ------------------------------------------------------------


def make_live(name: str = "live/cam") -> LivePath:
    description = parse_sdp(ANNOUNCED)
    live = LivePath.from_announce(name, description, announced_tracks(description.media), "publisher")
    live.online = True
    return live


def service(always: bool = False) -> MulticastService:
    return MulticastService(spec("239.255.42.0/28", (40000, 40099)), "127.0.0.1", lambda p: always, "host")


def test_setup_reply_and_refusals() -> None:
    mc = service()
    live = make_live()
    assert mc.refusal(live=False) is not None and "live paths only" in (mc.refusal(live=False) or "")
    assert mc.refusal(live=True) is None
    offer = parse_transport("RTP/AVP;multicast;destination=239.255.42.9;port=5000-5001")[0]
    reply, sink = mc.setup(live, 0, "s1", "10.0.0.5", offer)
    again, _ = mc.setup(live, 0, "s2", "10.0.0.6", parse_transport("RTP/AVP/UDP;multicast")[0])
    assert reply == again, "every session is told the same group, ports and SSRC"
    text = format_transport(reply)
    assert text.startswith("RTP/AVP;multicast;destination=239.255.42.") and ";source=127.0.0.1;" in text
    assert reply.port is not None and reply.port[1] == reply.port[0] + 1 and reply.ttl == 16
    assert sink.description.startswith("UDP multicast 239.255.42.") and not sink.closed
    foreign = parse_transport("RTP/AVP;multicast;destination=224.1.1.1")[0]
    with pytest.raises(RtspError) as refused:
        mc.setup(live, 1, "s3", "10.0.0.7", foreign)
    assert refused.value.status == 403
    assert mc.announced("live/cam") is None, "nothing is sent to the group yet"
    mc.leave("s1")
    mc.leave("s2")
    assert mc.senders["live/cam"].setups == set()
    mc.path_offline(live)
    assert mc.pool is not None and mc.pool.get("live/cam") is None, "the group is given back"
    assert MulticastService(None, "0.0.0.0", lambda p: False, "h").refusal(live=True) is not None


def test_exhausted_range_is_453() -> None:
    mc = MulticastService(spec("239.255.42.0/28", (40000, 40001)), "0.0.0.0", lambda p: False, "host")
    with pytest.raises(RtspError) as full:
        mc.setup(make_live(), 0, "s1", "10.0.0.5", parse_transport("RTP/AVP;multicast")[0])
    assert full.value.status == 453


def test_sdp_for_players_joining_the_group() -> None:
    mc = service(always=True)
    live = make_live()
    sender = mc._sender(live)  # an always-on path (its socket side is tested in a namespace)
    presentation = live_presentation(live)
    text = mc.sdp("live/cam", presentation, presentation.sdp("192.0.2.1"))
    assert text is not None
    description = parse_sdp(text)
    assert description.connection is not None
    assert (description.connection.address, description.connection.ttl) == (sender.allocation.group, 16)
    assert [m.port for m in description.media] == [sender.allocation.ports[0], sender.allocation.ports[1]]
    assert description.has("recvonly") and mc.advertised("live/cam")
    assert mc.sdp("live/other", presentation, presentation.sdp()) is None


def test_receiver_reports_are_kept_per_receiver() -> None:
    mc = service()
    live = make_live()
    _, sink = mc.setup(live, 0, "s1", "10.0.0.5", parse_transport("RTP/AVP;multicast")[0])
    sender = sink.sender
    track = sender.tracks[0]
    ours = track.stream.ssrc
    rr = RtcpRrPacket(ssrc=0xAAAA, reports=[RtcpReceiverInfo(ours, 64, 3, 100, 900, 0, 0)])
    other = RtcpRrPacket(ssrc=0xBBBB, reports=[RtcpReceiverInfo(ours ^ 1, 0, 0, 0, 0, 0, 0)])
    sender._rtcp_received(track, bytes(rr) + bytes(other), ("10.0.0.5", 40001))
    sender._rtcp_received(track, b"\x80garbage", ("10.0.0.9", 40001))
    assert list(track.receivers) == [0xAAAA]
    assert sink.reception.cumulative_lost == 3 and sink.reception.fraction_lost == 0.25
    assert sender.receiver_count() == 1
    assert sender.reception_for(0, "10.0.0.99").reports == 0
    sender._rtcp_received(track, bytes(RtcpByePacket(sources=[0xAAAA])), ("10.0.0.5", 40001))
    assert track.receivers == {}


def test_reports_to_the_group_keep_the_session_of_their_host_alive() -> None:
    mc = service()
    live = make_live()
    _, sink = mc.setup(live, 0, "s1", "10.0.0.5", parse_transport("RTP/AVP;multicast")[0])
    mc.setup(live, 0, "s2", "10.0.0.6", parse_transport("RTP/AVP;multicast")[0])
    track = sink.sender.tracks[0]
    assert mc.report_age("s1", "10.0.0.5") is None
    rr = RtcpRrPacket(ssrc=0xAAAA, reports=[RtcpReceiverInfo(track.stream.ssrc, 0, 0, 1, 0, 0, 0)])
    sink.sender._rtcp_received(track, bytes(rr), ("10.0.0.5", 40001))
    age = mc.report_age("s1", "10.0.0.5")
    assert age is not None and 0 <= age < 1
    assert mc.report_age("s2", "10.0.0.6") is None, "another host's player says nothing for s2"
    track.receivers[0xAAAA].last_seen -= 61
    age = mc.report_age("s1", "10.0.0.5")
    assert age is not None and 61 <= age < 62
    mc.leave("s1")
    assert mc.report_age("s1", "10.0.0.5") is None
