"""Header grammars: Transport, Range, Session, RTP-Info. Vectors from real clients, plus properties."""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streamd.rtsp.errors import RtspError
from streamd.rtsp.headers import (
    NptRange,
    RtpInfoEntry,
    TransportSpec,
    format_npt,
    format_range,
    format_rtp_info,
    format_session,
    format_transport,
    parse_range,
    parse_rtp_info,
    parse_session,
    parse_transport,
)

# --- Transport ---------------------------------------------------------------------------------------


def test_ffmpeg_udp() -> None:
    (spec,) = parse_transport("RTP/AVP/UDP;unicast;client_port=11902-11903")
    assert spec == TransportSpec("RTP/AVP", "UDP", "unicast", client_port=(11902, 11903))
    assert not spec.is_tcp


def test_ffmpeg_record_over_tcp() -> None:
    (spec,) = parse_transport("RTP/AVP/TCP;unicast;interleaved=0-1;mode=record")
    assert (spec.lower_transport, spec.interleaved, spec.mode) == ("TCP", (0, 1), "RECORD")
    assert spec.is_tcp


def test_gstreamer_udp_and_vlc_tcp() -> None:
    (gst,) = parse_transport("RTP/AVP;unicast;client_port=59558-59559")
    assert (gst.profile, gst.lower_transport, gst.client_port) == ("RTP/AVP", "UDP", (59558, 59559))
    (vlc,) = parse_transport("RTP/AVP/TCP;unicast;interleaved=2-3")
    assert (vlc.lower_transport, vlc.cast, vlc.interleaved, vlc.mode) == ("TCP", "unicast", (2, 3), "PLAY")


def test_alternatives_keep_the_clients_order() -> None:
    header = (
        'RTP/AVP;multicast;client_port=5000-5001;mode="PLAY",'
        'RTP/AVP;unicast;client_port=5000-5001;mode="PLAY", '
        'RTP/AVP/TCP;unicast;interleaved=0-1;mode="PLAY"'
    )
    specs = parse_transport(header)
    assert [(s.cast, s.lower_transport) for s in specs] == [
        ("multicast", "UDP"),
        ("unicast", "UDP"),
        ("unicast", "TCP"),
    ]


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("RTP/AVP;unicast;client_port=5000", {"client_port": (5000, 5001)}),
        ("RTP/AVP;client_port=5000-5001;unicast", {"client_port": (5000, 5001), "cast": "unicast"}),
        ("rtp/avp/tcp;INTERLEAVED=4", {"lower_transport": "TCP", "interleaved": (4, 5)}),
        ("RTP/AVP;unicast;ssrc=1A2B3", {"ssrc": 0x1A2B3}),
        ("RTP/AVP;unicast;ssrc=   0A2B3C4D", {"ssrc": 0x0A2B3C4D}),
        ("RTP/AVP;unicast;ssrc=0A2B 3C4D", {"ssrc": 0x0A2B3C4D}),
        ("RTP/AVP;mode=receive", {"mode": "RECORD"}),
        ('RTP/AVP;mode="Play"', {"mode": "PLAY"}),
        ('RTP/AVP;mode="PLAY,record"', {"mode": "PLAY,RECORD"}),
        ("RTP/AVPF/UDP;unicast", {"profile": "RTP/AVPF"}),
        ("RTP/SAVP;unicast", {"profile": "RTP/SAVP"}),
        (
            "RTP/AVP;multicast;destination=224.2.0.1;port=3456-3457;ttl=16",
            {"cast": "multicast", "destination": "224.2.0.1", "port": (3456, 3457), "ttl": 16},
        ),
        ("RTP/AVP;unicast;source=10.0.0.1;destination", {"source": "10.0.0.1", "destination": None}),
        ("RTP/AVP;unicast;append;;", {"append": True}),
        (
            'RTP/AVP;unicast;layers=2;x-foo;X-Bar="a b"',
            {"extra": {"layers": "2", "x-foo": None, "x-bar": "a b"}},
        ),
        ("RTP/AVP;unicast;client_port=5000-5001;server_port=6970-6971", {"server_port": (6970, 6971)}),
    ],
)
def test_lenient_parameters(header: str, expected: dict[str, object]) -> None:
    (spec,) = parse_transport(header)
    for name, value in expected.items():
        assert getattr(spec, name) == value, name


def test_malformed_alternative_is_skipped() -> None:
    specs = parse_transport("RTP/AVP;client_port=abc,RTP/AVP/SCTP,RTP/AVP/TCP;interleaved=0-1")
    assert [s.interleaved for s in specs] == [(0, 1)]


@pytest.mark.parametrize(
    "header",
    [
        "",
        " , ",
        "garbage",
        "RTP/AVP;client_port=99999",
        "RTP/AVP;client_port=65535",
        "RTP/AVP/TCP;interleaved=255",
        "RTP/AVP/TCP;interleaved=0-256",
        "RTP/AVP;ttl=300",
        "RTP/AVP;ssrc=123456789",
        "RTP/AVP;ssrc=xyz",
        "RTP/AVP;mode=",
        "RTP/AVP;=5",
        "RTP/AVP/UDP/extra",
    ],
)
def test_nothing_usable_is_461(header: str) -> None:
    with pytest.raises(RtspError) as info:
        parse_transport(header)
    assert info.value.status == 461


def test_format_server_replies() -> None:
    udp = TransportSpec(cast="unicast", client_port=(5000, 5001), server_port=(6970, 6971), ssrc=0x1A2B3C4D)
    assert format_transport(udp) == (
        'RTP/AVP;unicast;client_port=5000-5001;server_port=6970-6971;ssrc=1A2B3C4D;mode="PLAY"'
    )
    tcp = TransportSpec(lower_transport="TCP", cast="unicast", interleaved=(0, 1), ssrc=0xBEEF)
    assert format_transport(tcp) == 'RTP/AVP/TCP;unicast;interleaved=0-1;ssrc=0000BEEF;mode="PLAY"'
    record = parse_transport("RTP/AVP/TCP;unicast;interleaved=0-1;mode=receive")[0]
    assert format_transport(record) == 'RTP/AVP/TCP;unicast;interleaved=0-1;mode="RECORD"'


_KNOWN = {"unicast", "multicast", "append", "destination", "source", "client_port", "server_port"}
_KNOWN |= {"port", "interleaved", "ttl", "ssrc", "mode"}
_pairs = st.tuples(st.integers(0, 65535), st.integers(0, 65535))
_opt = st.none
transport_specs = st.builds(
    TransportSpec,
    profile=st.sampled_from(["RTP/AVP", "RTP/AVPF", "RTP/SAVP", "RTP/SAVPF"]),
    lower_transport=st.sampled_from(["UDP", "TCP"]),
    cast=st.sampled_from([None, "unicast", "multicast"]),
    client_port=_opt() | _pairs,
    server_port=_opt() | _pairs,
    interleaved=_opt() | st.tuples(st.integers(0, 255), st.integers(0, 255)),
    port=_opt() | _pairs,
    ttl=_opt() | st.integers(0, 255),
    destination=_opt() | st.ip_addresses().map(str),
    source=_opt() | st.ip_addresses().map(str),
    ssrc=_opt() | st.integers(0, 2**32 - 1),
    mode=st.sampled_from(["PLAY", "RECORD", "PLAY,RECORD"]),
    append=st.booleans(),
    extra=st.dictionaries(
        st.from_regex(r"[a-z][a-z0-9_-]{0,8}", fullmatch=True).filter(lambda n: n not in _KNOWN),
        _opt() | st.from_regex(r"[A-Za-z0-9./:+-]{1,10}", fullmatch=True) | st.just("two words"),
        max_size=3,
    ),
)


@given(st.lists(transport_specs, min_size=1, max_size=3))
def test_transport_round_trip(specs: list[TransportSpec]) -> None:
    assert parse_transport(",".join(format_transport(s) for s in specs)) == specs


@given(
    st.text(max_size=80)
    | st.lists(st.sampled_from(["RTP/AVP", "/TCP", ";", ",", "=", '"', "5000", "-"])).map("".join)
)
def test_transport_parser_only_raises_461(header: str) -> None:
    try:
        specs = parse_transport(header)
    except RtspError as exc:
        assert exc.status == 461
    else:
        assert specs


# --- Range -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("npt=0.000-", NptRange(Fraction(0), None)),  # ffmpeg
        ("npt=0-", NptRange(Fraction(0), None)),  # GStreamer
        ("npt=12.345-20", NptRange(Fraction("12.345"), Fraction(20))),
        ("npt=12.-", NptRange(Fraction(12), None)),
        ("npt=-20", NptRange(Fraction(0), Fraction(20))),
        ("npt=now-", NptRange(None, None, start_is_now=True)),
        ("npt=1:02:03.5-", NptRange(Fraction("3723.5"), None)),
        ("npt=123:00:00-", NptRange(Fraction(123 * 3600), None)),
        ("NPT = 5 - 10", NptRange(Fraction(5), Fraction(10))),
        ("npt=10-;time=19970123T153600Z", NptRange(Fraction(10), None)),
        ("npt=7-7", NptRange(Fraction(7), Fraction(7))),
    ],
)
def test_parse_range(header: str, expected: NptRange) -> None:
    assert parse_range(header) == expected


@pytest.mark.parametrize(
    "header",
    ["clock=19961108T142300Z-19961108T143520Z", "smpte=10:07:00-10:07:33:05.01", "smpte-25=10:07:00-"],
)
def test_other_units_are_unsupported(header: str) -> None:
    with pytest.raises(RtspError) as info:
        parse_range(header)
    assert info.value.status == 457
    assert "unsupported unit" in info.value.reason


@pytest.mark.parametrize(
    "header",
    [
        "",
        "npt",
        "npt=",
        "npt=-",
        "npt=abc-",
        "npt=10-5",
        "npt=1:60:00-",
        "npt=0-now",
        "bytes=0-",
        "npt=1e3-",
        "npt=5",
    ],
)
def test_invalid_range_is_457(header: str) -> None:
    with pytest.raises(RtspError) as info:
        parse_range(header)
    assert info.value.status == 457


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (Fraction(0), "0"),
        (Fraction(25, 2), "12.5"),
        (Fraction("3.042"), "3.042"),
        (Fraction(1, 3), "0.333"),
        (Fraction(2, 3), "0.667"),
        (Fraction("59.9996"), "60"),
        (Fraction(7200), "7200"),
    ],
)
def test_format_npt(seconds: Fraction, text: str) -> None:
    assert format_npt(seconds) == text


def test_format_range() -> None:
    assert format_range(NptRange(Fraction(0), Fraction(25, 2))) == "npt=0-12.5"
    assert format_range(NptRange(Fraction("3.2"), None)) == "npt=3.2-"
    assert format_range(NptRange(None, None, start_is_now=True)) == "npt=now-"
    with pytest.raises(ValueError):
        format_npt(Fraction(-1))


_millis = st.integers(0, 10**9).map(lambda ms: Fraction(ms, 1000))


@given(_millis, st.none() | _millis, st.booleans())
def test_range_round_trip(start: Fraction, end: Fraction | None, now: bool) -> None:
    if end is not None and end < start:
        start, end = end, start
    r = NptRange(None, end, start_is_now=True) if now else NptRange(start, end)
    assert parse_range(format_range(r)) == r


@given(
    st.text(max_size=40)
    | st.lists(st.sampled_from(["npt", "=", "-", ":", ".", "1", "59", "now", ";"])).map("".join)
)
def test_range_parser_only_raises_457(header: str) -> None:
    try:
        parse_range(header)
    except RtspError as exc:
        assert exc.status == 457


# --- Session -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("12345678", ("12345678", None)),
        ("12345678;timeout=60", ("12345678", 60)),
        (" a$b-c_d.e+f ; Timeout = 30 ", ("a$b-c_d.e+f", 30)),
        ("abc;timeout=x", ("abc", None)),
        ("abc;foo=bar", ("abc", None)),
    ],
)
def test_parse_session(header: str, expected: tuple[str, int | None]) -> None:
    assert parse_session(header) == expected


@pytest.mark.parametrize("header", ["", " ", ";timeout=60", "a b", "x" * 65, "caf\u00e9", "a,b"])
def test_invalid_session_is_454(header: str) -> None:
    with pytest.raises(RtspError) as info:
        parse_session(header)
    assert info.value.status == 454


def test_format_session() -> None:
    assert format_session("12345678", 60) == "12345678;timeout=60"
    assert format_session("12345678") == "12345678"
    with pytest.raises(ValueError):
        format_session("bad id", 60)


_session_ids = st.from_regex(r"[A-Za-z0-9$\-_.+]{1,64}", fullmatch=True)


@given(_session_ids, st.none() | st.integers(0, 10**6))
def test_session_round_trip(session_id: str, timeout: int | None) -> None:
    assert parse_session(format_session(session_id, timeout)) == (session_id, timeout)


@given(st.text(max_size=80))
def test_session_parser_only_raises_454(header: str) -> None:
    try:
        parse_session(header)
    except RtspError as exc:
        assert exc.status == 454


# --- RTP-Info ----------------------------------------------------------------------------------------


def test_format_rtp_info() -> None:
    entries = [RtpInfoEntry("rtsp://h/p/trackID=0", 123, 456), RtpInfoEntry("rtsp://h/p/trackID=1", 7, None)]
    assert (
        format_rtp_info(entries)
        == "url=rtsp://h/p/trackID=0;seq=123;rtptime=456,url=rtsp://h/p/trackID=1;seq=7"
    )


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (
            "url=rtsp://foo.com/bar.avi/streamid=0;seq=45102, url=rtsp://foo.com/bar.avi/streamid=1;seq=30211",
            [
                RtpInfoEntry("rtsp://foo.com/bar.avi/streamid=0", 45102),
                RtpInfoEntry("rtsp://foo.com/bar.avi/streamid=1", 30211),
            ],
        ),
        ("url=rtsp://h/a;rtptime=5;seq=6", [RtpInfoEntry("rtsp://h/a", 6, 5)]),
        ("url=rtsp://h/p;jsessionid=1,2/t;seq=1", [RtpInfoEntry("rtsp://h/p;jsessionid=1,2/t", 1)]),
        ('url="rtsp://h/a;b";seq=1', [RtpInfoEntry("rtsp://h/a;b", 1)]),
        ("url=rtsp://h/a;seq=99999;rtptime=-1", [RtpInfoEntry("rtsp://h/a")]),
        ("seq=1,url=,url=rtsp://h/b;ssrc=1234", [RtpInfoEntry("rtsp://h/b")]),
        ("", []),
    ],
)
def test_parse_rtp_info(header: str, expected: list[RtpInfoEntry]) -> None:
    assert parse_rtp_info(header) == expected


_urls = st.from_regex(r"rtsp://[a-z0-9.]{1,12}(:[0-9]{1,5})?(/[A-Za-z0-9._=-]{0,10}){0,3}", fullmatch=True)
_entries = st.builds(
    RtpInfoEntry, _urls, st.none() | st.integers(0, 65535), st.none() | st.integers(0, 2**32 - 1)
)


@given(st.lists(_entries, max_size=4))
def test_rtp_info_round_trip(entries: list[RtpInfoEntry]) -> None:
    assert parse_rtp_info(format_rtp_info(entries)) == entries


@given(
    st.text(max_size=80)
    | st.lists(st.sampled_from(["url=", "rtsp://h", ";seq=", "1", ",", '"', ";"])).map("".join)
)
def test_rtp_info_parser_never_raises(header: str) -> None:
    assert all(isinstance(e, RtpInfoEntry) for e in parse_rtp_info(header))
