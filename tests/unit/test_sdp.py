"""The sdp package: real-world descriptions, writer output, parser errors, and property tests."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sdp import (
    MAX_SDP_BYTES,
    MAX_SDP_LINES,
    Attribute,
    Bandwidth,
    Connection,
    FmtpParams,
    MediaDescription,
    Origin,
    RtpMap,
    SdpParseError,
    SessionDescription,
    Timing,
    format_fmtp,
    format_rtpmap,
    parse,
    parse_fmtp,
    parse_rtpmap,
    write,
)

# What an ffmpeg-style RTSP server answers to DESCRIBE for an MP4 with H.264 and AAC.
DESCRIBE_H264_AAC = (
    "v=0\r\n"
    "o=- 0 0 IN IP4 127.0.0.1\r\n"
    "s=Big Buck Bunny\r\n"
    "c=IN IP4 0.0.0.0\r\n"
    "t=0 0\r\n"
    "a=tool:libavformat 59.27.100\r\n"
    "a=range:npt=0-10.5\r\n"
    "a=control:*\r\n"
    "m=video 0 RTP/AVP 96\r\n"
    "b=AS:500\r\n"
    "a=rtpmap:96 H264/90000\r\n"
    "a=fmtp:96 packetization-mode=1; sprop-parameter-sets=Z0IAH+kA=,aM4G4g==; profile-level-id=42001F\r\n"
    "a=control:trackID=1\r\n"
    "m=audio 0 RTP/AVP 97\r\n"
    "b=AS:128\r\n"
    "a=rtpmap:97 MPEG4-GENERIC/44100/2\r\n"
    "a=fmtp:97 profile-level-id=1;mode=AAC-hbr;sizelength=13;indexlength=3;indexdeltalength=3;"
    " config=1210\r\n"
    "a=control:trackID=2\r\n"
)

# live555 style: LF-only endings, i= lines, absent session c=, trailing whitespace, no a=range end.
LIVE555 = (
    "v=0\n"
    "o=- 1700000000123456 1 IN IP4 192.168.1.10\n"
    's=Session streamed by "testOnDemandRTSPServer"\n'
    "i=test.264\n"
    "t=0 0\n"
    "a=tool:LIVE555 Streaming Media v2023.01.19\n"
    "a=type:broadcast\n"
    "a=control:*\n"
    "a=range:npt=0-   \n"
    'a=x-qt-text-nam:Session streamed by "testOnDemandRTSPServer"\n'
    "m=video 0 RTP/AVP 96\n"
    "c=IN IP4 0.0.0.0\n"
    "b=AS:500\n"
    "a=rtpmap:96 H264/90000\n"
    "a=fmtp:96 packetization-mode=1;profile-level-id=4D4033;sprop-parameter-sets=Z01AM5JUAoAt,aO48gA==\n"
    "a=control:track1\n"
)

# gst-rtsp-server style: absolute control URLs, property attributes, a multicast connection.
GSTREAMER = (
    "v=0\r\n"
    "o=- 1188340656180883 1 IN IP4 127.0.0.1\r\n"
    "s=Session streamed with GStreamer\r\n"
    "i=rtsp-server\r\n"
    "t=0 0\r\n"
    "a=tool:GStreamer\r\n"
    "a=type:broadcast\r\n"
    "a=range:npt=now-\r\n"
    "a=control:rtsp://127.0.0.1:8554/test\r\n"
    "m=video 5000 RTP/AVP 96\r\n"
    "c=IN IP4 224.2.0.1/15\r\n"
    "a=rtpmap:96 H264/90000\r\n"
    "a=framerate:30\r\n"
    "a=fmtp:96 packetization-mode=1;sprop-parameter-sets=Z2QAFqzZQ,aOvjyyLA;level-asymmetry-allowed=1\r\n"
    "a=control:rtsp://127.0.0.1:8554/test/stream=0\r\n"
    "a=ts-refclk:local\r\n"
    "a=mediaclk:sender\r\n"
    "a=recvonly\r\n"
)


def test_describe_h264_aac() -> None:
    sd = parse(DESCRIBE_H264_AAC)
    assert sd.origin == Origin("-", "0", "0", "IN", "IP4", "127.0.0.1")
    assert sd.session_name == "Big Buck Bunny"
    assert sd.connection == Connection("IN", "IP4", "0.0.0.0")
    assert sd.timings == [Timing(0, 0)]
    assert sd.control == "*"
    assert sd.get("range") == "npt=0-10.5"
    video, audio = sd.media
    assert (video.media, video.port, video.proto, video.formats) == ("video", 0, "RTP/AVP", ["96"])
    assert video.bandwidths == [Bandwidth("AS", 500)]
    assert video.rtpmap(96) == RtpMap(96, "H264", 90000)
    fmtp = video.fmtp("96")
    assert fmtp["sprop-parameter-sets"] == "Z0IAH+kA=,aM4G4g=="
    assert fmtp["Profile-Level-ID"] == "42001F"
    assert list(fmtp) == ["packetization-mode", "sprop-parameter-sets", "profile-level-id"]
    assert video.control == "trackID=1"
    assert audio.rtpmap(97) == RtpMap(97, "MPEG4-GENERIC", 44100, "2")
    assert audio.rtpmap(97).channels == 2
    assert audio.fmtp(97)["config"] == "1210"
    assert audio.control == "trackID=2"
    assert video.rtpmap(97) is None and video.fmtp(97) == {}


def test_live555_lf_only_and_trailing_whitespace() -> None:
    sd = parse(LIVE555.encode())
    assert sd.origin.session_id == "1700000000123456"
    assert sd.information == "test.264"
    assert sd.connection is None
    assert sd.get("range") == "npt=0-"
    (video,) = sd.media
    assert video.connection == Connection(address="0.0.0.0")
    assert video.fmtp(96)["sprop-parameter-sets"] == "Z01AM5JUAoAt,aO48gA=="
    assert video.control == "track1"


def test_gstreamer_absolute_controls_and_multicast() -> None:
    sd = parse(GSTREAMER)
    assert sd.control == "rtsp://127.0.0.1:8554/test"
    (video,) = sd.media
    assert video.port == 5000
    assert video.connection == Connection("IN", "IP4", "224.2.0.1", ttl=15)
    assert video.control == "rtsp://127.0.0.1:8554/test/stream=0"
    assert video.has("recvonly") and video.get("recvonly") is None
    assert video.get("framerate") == "30"


@pytest.mark.parametrize("text", [DESCRIBE_H264_AAC, LIVE555, GSTREAMER])
def test_real_world_examples_round_trip(text: str) -> None:
    sd = parse(text)
    assert parse(write(sd)) == sd


def test_writer_field_order_and_crlf() -> None:
    media = MediaDescription(
        "audio",
        49170,
        "RTP/AVP",
        ["0", "97"],
        port_count=2,
        title="voice",
        connection=Connection(address="10.0.0.1"),
        bandwidths=[Bandwidth("AS", 64)],
        key="prompt",
        attributes=[Attribute("rtpmap", "97 opus/48000/2"), Attribute("sendrecv")],
    )
    sd = SessionDescription(
        origin=Origin("jdoe", "3724394400", "3724394405", address="198.51.100.1"),
        session_name="Call",
        information="A call",
        uri="http://example.com/call",
        emails=["j@example.com"],
        phones=["+1 617 555-6011"],
        connection=Connection(address="224.2.17.12", ttl=127, count=3),
        bandwidths=[Bandwidth("CT", 128)],
        timings=[Timing(3724394400, 3724398000, ["604800 3600 0 90000"])],
        time_zones="3730928400 -1h 3749680800 0",
        key="clear:secret",
        attributes=[Attribute("control", "*")],
        media=[media],
    )
    text = write(sd)
    assert text == (
        "v=0\r\n"
        "o=jdoe 3724394400 3724394405 IN IP4 198.51.100.1\r\n"
        "s=Call\r\n"
        "i=A call\r\n"
        "u=http://example.com/call\r\n"
        "e=j@example.com\r\n"
        "p=+1 617 555-6011\r\n"
        "c=IN IP4 224.2.17.12/127/3\r\n"
        "b=CT:128\r\n"
        "t=3724394400 3724398000\r\n"
        "r=604800 3600 0 90000\r\n"
        "z=3730928400 -1h 3749680800 0\r\n"
        "k=clear:secret\r\n"
        "a=control:*\r\n"
        "m=audio 49170/2 RTP/AVP 0 97\r\n"
        "i=voice\r\n"
        "c=IN IP4 10.0.0.1\r\n"
        "b=AS:64\r\n"
        "k=prompt\r\n"
        "a=rtpmap:97 opus/48000/2\r\n"
        "a=sendrecv\r\n"
    )
    assert parse(text) == sd


def test_default_description_is_the_interop_skeleton() -> None:
    assert write(SessionDescription()) == "v=0\r\no=- 0 0 IN IP4 0.0.0.0\r\ns= \r\nt=0 0\r\n"


def test_writer_refuses_line_injection() -> None:
    with pytest.raises(ValueError, match="CR, LF"):
        write(SessionDescription(session_name="movie\r\na=control:evil"))
    with pytest.raises(ValueError, match="TTL"):
        write(SessionDescription(connection=Connection(address="224.0.0.1", count=2)))
    with pytest.raises(ValueError, match="TTL"):
        write(SessionDescription(connection=Connection(addrtype="IP6", address="ff15::1", ttl=2)))


def test_ip6_connection_suffix_is_a_count() -> None:
    sd = parse("v=0\nc=IN IP6 ff15::101/3\n")
    assert sd.connection == Connection("IN", "IP6", "ff15::101", ttl=None, count=3)
    assert "c=IN IP6 ff15::101/3\r\n" in write(sd)


def test_lenient_inputs() -> None:
    sd = parse("v=0\ns=\nx=unknown\nA=upper\nnot a field\n\n  a=recvonly  \nm=video 0 RTP/AVP 96\nt=1 2\n")
    assert sd.session_name == " "  # an empty s= reads as RFC 8866's "no name"
    assert sd.timings == []  # no t= at session level; the one inside m= is out of place
    assert sd.origin == Origin()
    assert sd.attributes == [Attribute("recvonly")]
    assert sd.media[0].formats == ["96"]
    assert parse("\ufeffv=0\r\n").version == 0
    assert parse(b"v=0\r\ns=M\xe9dia\r\n").session_name == "Média"  # Latin-1 fallback
    assert parse("v=0\nm=application 9 UDP/DTLS/SCTP\n").media[0].formats == []


def test_repeated_single_fields_keep_the_first() -> None:
    sd = parse("v=0\no=a 1 1 IN IP4 1.1.1.1\no=b 2 2 IN IP4 2.2.2.2\ns=one\ns=two\nv=0\n")
    assert sd.origin.username == "a" and sd.session_name == "one"


@pytest.mark.parametrize(
    ("text", "line", "needle"),
    [
        ("", None, "empty"),
        ("\r\n\r\n", None, "empty"),
        ("v=1\r\n", 1, "v=0"),
        ("o=- 0 0 IN IP4 1.2.3.4\r\nv=0\r\n", 1, "v=0"),
        ("v=0\r\no=- 0 0 IN IP4\r\n", 2, "o="),
        ("v=0\r\nc=IN IP4\r\n", 2, "c="),
        ("v=0\r\nc=IN IP4 224.0.0.1/1/2/3\r\n", 2, "c="),
        ("v=0\r\nc=IN IP4 224.0.0.1/x\r\n", 2, "suffix"),
        ("v=0\r\nc=IN IP6 ff15::1/1/2\r\n", 2, "count"),
        ("v=0\r\nm=video\r\n", 2, "m="),
        ("v=0\r\nm=video 0\r\n", 2, "m="),
        ("v=0\r\nm=video x RTP/AVP 96\r\n", 2, "port"),
        ("v=0\r\nm=video 70000 RTP/AVP 96\r\n", 2, "65535"),
        ("v=0\r\nm=video 0/-1 RTP/AVP 96\r\n", 2, "count"),
        ("v=0\n\nm=video 0 RTP/AVP 96\nc=IN IP4 1.2.3.4 extra\n", 4, "c="),
        ("v=0\r\nb=AS\r\n", 2, "b="),
        ("v=0\r\nb=AS:fast\r\n", 2, "bandwidth"),
        ("v=0\r\nt=0\r\n", 2, "t="),
        ("v=0\r\nt=+1 2\r\n", 2, "start"),
    ],
)
def test_parse_errors_name_the_line(text: str, line: int | None, needle: str) -> None:
    with pytest.raises(SdpParseError, match=needle) as info:
        parse(text)
    assert info.value.line == line
    if line is not None:
        assert str(info.value).startswith(f"SDP line {line}: ")


def test_size_and_line_limits() -> None:
    with pytest.raises(SdpParseError, match="limit"):
        parse(b"v=0\r\n" + b"a" * MAX_SDP_BYTES)
    with pytest.raises(SdpParseError, match="limit"):
        parse("v=0\n" + "a=x\n" * MAX_SDP_LINES)
    parse("v=0\n" + "a=x\n" * (MAX_SDP_LINES - 1))


def test_attribute_helpers() -> None:
    m = MediaDescription("video", 0, "RTP/AVP", ["96"])
    m.add("recvonly")
    m.add("x", "1")
    m.add("y", "2")
    m.add("x", "3")
    assert m.get("x") == "1" and m.get_all("x") == ["1", "3"] and m.get("missing") is None
    assert m.has("recvonly") and not m.has("sendonly")
    m.set("x", "9")
    assert m.attributes == [Attribute("recvonly"), Attribute("x", "9"), Attribute("y", "2")]
    m.control = "trackID=0"
    m.control = "trackID=1"
    assert m.get_all("control") == ["trackID=1"]
    m.control = None
    assert not m.has("control")
    assert m.remove("y") == 1
    sd = SessionDescription()
    sd.control = "*"
    assert sd.attributes == [Attribute("control", "*")]


def test_rtpmap_grammar() -> None:
    assert parse_rtpmap("97 mpeg4-generic/48000/2") == RtpMap(97, "mpeg4-generic", 48000, "2")
    assert parse_rtpmap(" 96  H264/90000 ") == RtpMap(96, "H264", 90000)
    assert format_rtpmap(RtpMap(111, "opus", 48000, "2")) == "111 opus/48000/2"
    assert RtpMap(96, "H264", 90000).channels is None
    for bad in [
        "",
        "96",
        "96 H264",
        "96 /90000",
        "128 H264/90000",
        "x H264/90000",
        "96 H264/fast",
        "96 a/1/2/3",
    ]:
        with pytest.raises(ValueError):
            parse_rtpmap(bad)
    m = MediaDescription("video", 0, "RTP/AVP", ["96"], attributes=[Attribute("rtpmap", "96 H264")])
    assert m.rtpmap(96) is None  # malformed reads as "no usable rtpmap", not a crash


def test_fmtp_grammar() -> None:
    fmt, params = parse_fmtp("96 a=1; B = x==;;flag ; a=dup")
    assert fmt == "96"
    assert dict(params) == {"a": "1", "B": "x==", "flag": ""}
    assert params["b"] == "x==" and "A" in params and "zzz" not in params and 1 not in params
    assert format_fmtp(96, params) == "96 a=1;B=x==;flag"
    assert parse_fmtp("101") == ("101", FmtpParams())
    assert format_fmtp("101", {}) == "101"
    with pytest.raises(ValueError):
        parse_fmtp("  ")
    assert params == {"a": "1", "B": "x==", "flag": ""}


# ---- property tests -----------------------------------------------------------------------------

_TOKEN_CHARS = st.characters(min_codepoint=0x21, max_codepoint=0x7E)
token = st.text(_TOKEN_CHARS, min_size=1, max_size=12)
name_token = st.text(
    st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters=":"), min_size=1
)
uint = st.integers(min_value=0, max_value=2**64)
# Free text: anything but line breaks and NUL, without the surrounding blanks the parser trims.
_TEXT_CHARS = st.characters(exclude_characters="\r\n\0", exclude_categories=("Cs",))
free_text = st.text(_TEXT_CHARS, max_size=30).map(lambda s: s.strip(" \t\r"))
nonempty_text = free_text.filter(bool)


@st.composite
def connections(draw: st.DrawFn) -> Connection:
    addrtype = draw(st.sampled_from(["IP4", "IP6", "X-FOO"]))
    address = draw(st.text(_TOKEN_CHARS.filter(lambda c: c != "/"), min_size=1, max_size=20))
    ttl = None if addrtype == "IP6" else draw(st.none() | uint)
    count = draw(st.none() | uint)
    if ttl is None and addrtype != "IP6":
        count = None  # IP4 writes a count only after a TTL
    return Connection(draw(token), addrtype, address, ttl, count)


bandwidths = st.lists(st.builds(Bandwidth, name_token, uint), max_size=2)
attributes = st.lists(st.builds(Attribute, name_token, st.none() | free_text), max_size=4)


@st.composite
def media_descriptions(draw: st.DrawFn) -> MediaDescription:
    return MediaDescription(
        media=draw(token),
        port=draw(st.integers(0, 65535)),
        proto=draw(token),
        formats=draw(st.lists(token, max_size=3)),
        port_count=draw(st.none() | uint),
        title=draw(st.none() | free_text),
        connection=draw(st.none() | connections()),
        bandwidths=draw(bandwidths),
        key=draw(st.none() | free_text),
        attributes=draw(attributes),
    )


@st.composite
def session_descriptions(draw: st.DrawFn) -> SessionDescription:
    return SessionDescription(
        origin=Origin(*(draw(token) for _ in range(6))),
        session_name=draw(nonempty_text | st.just(" ")),
        information=draw(st.none() | free_text),
        uri=draw(st.none() | free_text),
        emails=draw(st.lists(free_text, max_size=2)),
        phones=draw(st.lists(free_text, max_size=2)),
        connection=draw(st.none() | connections()),
        bandwidths=draw(bandwidths),
        timings=draw(st.lists(st.builds(Timing, uint, uint, st.lists(free_text, max_size=2)), max_size=2)),
        time_zones=draw(st.none() | free_text),
        key=draw(st.none() | free_text),
        attributes=draw(attributes),
        media=draw(st.lists(media_descriptions(), max_size=3)),
    )


@given(session_descriptions())
def test_write_then_parse_round_trips(sd: SessionDescription) -> None:
    text = write(sd)
    assert parse(text) == sd
    assert parse(text.encode()) == sd
    assert parse(text.replace("\r\n", "\n")) == sd


@given(st.integers(0, 127), name_token.filter(lambda s: "/" not in s), uint, st.none() | name_token)
def test_rtpmap_round_trips(pt: int, name: str, rate: int, params: str | None) -> None:
    if params is not None and "/" in params:
        params = params.replace("/", "")
    rtpmap = RtpMap(pt, name, rate, params or None)
    assert parse_rtpmap(format_rtpmap(rtpmap)) == rtpmap


_FMTP_KEY = st.text(
    st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters=";="), min_size=1, max_size=10
)
_FMTP_VALUE = st.text(
    st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters=";"), max_size=16
)


@given(st.dictionaries(_FMTP_KEY, _FMTP_VALUE, max_size=5))
def test_fmtp_round_trips(params: dict[str, str]) -> None:
    fmt, parsed = parse_fmtp(format_fmtp(96, params))
    assert fmt == "96"
    expected = FmtpParams(params)  # case-insensitive duplicates collapse to the first
    assert list(parsed.items()) == list(expected.items())


@settings(max_examples=300)
@given(
    st.text(max_size=400)
    | st.binary(max_size=400)
    | st.text(max_size=400).map(lambda s: "v=0\r\n" + s)
    | st.binary(max_size=400).map(lambda b: b"v=0\n" + b)
)
def test_arbitrary_input_only_raises_sdp_parse_error(data: str | bytes) -> None:
    with contextlib.suppress(SdpParseError):
        parse(data)


_LINE = st.tuples(st.sampled_from("vosiuepcbtrzkamx"), st.text(max_size=40)).map(lambda t: f"{t[0]}={t[1]}")


@settings(max_examples=300)
@given(st.lists(_LINE, max_size=20), st.sampled_from(["\n", "\r\n"]))
def test_sdp_shaped_input_only_raises_sdp_parse_error(lines: list[str], eol: str) -> None:
    try:
        sd = parse(eol.join(["v=0", *lines]))
    except SdpParseError:
        return
    for m in sd.media:  # the helpers read untrusted values too
        for pt in m.formats:
            m.rtpmap(pt)
            m.fmtp(pt)
