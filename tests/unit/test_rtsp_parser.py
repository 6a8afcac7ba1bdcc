"""RTSP message parser and serialisation: real client traffic, error recovery, and properties."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from multidict import CIMultiDict

from streamd.rtsp.message import InterleavedFrame, Request, Response
from streamd.rtsp.parser import Event, MessageParser, ParseError

# --- Real traffic, captured from Debian's ffmpeg 5.1 and GStreamer 1.22 against a stub server ----------

FFMPEG_UDP = (
    b"OPTIONS rtsp://127.0.0.1:18554/test RTSP/1.0\r\nCSeq: 1\r\nUser-Agent: Lavf59.27.100\r\n\r\n"
    b"DESCRIBE rtsp://127.0.0.1:18554/test RTSP/1.0\r\nAccept: application/sdp\r\nCSeq: 2\r\n"
    b"User-Agent: Lavf59.27.100\r\n\r\n"
    b"SETUP rtsp://127.0.0.1:18554/test/trackID=0 RTSP/1.0\r\n"
    b"Transport: RTP/AVP/UDP;unicast;client_port=11902-11903\r\nCSeq: 3\r\nUser-Agent: Lavf59.27.100\r\n\r\n"
    b"PLAY rtsp://127.0.0.1:18554/test/ RTSP/1.0\r\nRange: npt=0.000-\r\nCSeq: 4\r\n"
    b"User-Agent: Lavf59.27.100\r\nSession: 12345678\r\n\r\n"
)

GSTREAMER_TCP = (
    b"OPTIONS rtsp://127.0.0.1:18554/test RTSP/1.0\r\nCSeq: 1\r\nUser-Agent: GStreamer/1.22.0\r\n"
    b"User-Agent: RealMedia Player Version 6.0.9.1235 (linux-2.0-libc6-i386-gcc2.95)\r\n"
    b"ClientChallenge: 9e26d33f2984236010ef6253fb1887f7\r\nCompanyID: KnKV4M4I/B2FjJ1TToLycw==\r\n"
    b"GUID: 00000000-0000-0000-0000-000000000000\r\nRegionData: 0\r\n"
    b"PlayerStarttime: [28/03/2003:22:50:23 00:00]\r\nClientID: Linux_2.4_6.0.9.1235_play32_RN01_EN_586\r\n"
    b"Date: Sat, 28 Nov 2026 10:56:16 GMT\r\n\r\n"
    b"SETUP rtsp://127.0.0.1:18554/test/trackID=0 RTSP/1.0\r\nCSeq: 3\r\nUser-Agent: GStreamer/1.22.0\r\n"
    b"Transport: RTP/AVP/TCP;unicast;interleaved=0-1\r\nDate: Sat, 28 Nov 2026 10:56:16 GMT\r\n\r\n"
)

FFMPEG_SDP = (
    b"v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=No Name\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    b"a=tool:libavformat LIBAVFORMAT_VERSION\r\nm=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n"
    b"a=fmtp:96 packetization-mode=1; sprop-parameter-sets=Z/QACpGbKITYCIAAAAMAgAAABQeJEss=,aOvjxEhE; "
    b"profile-level-id=F4000A\r\na=control:streamid=0\r\n"
)
FFMPEG_RECORD = (
    b"ANNOUNCE rtsp://127.0.0.1:18555/pub RTSP/1.0\r\nContent-Type: application/sdp\r\nCSeq: 2\r\n"
    b"User-Agent: Lavf59.27.100\r\nContent-Length: 298\r\n\r\n"
    + FFMPEG_SDP
    + b"SETUP rtsp://127.0.0.1:18555/pub/streamid=0 RTSP/1.0\r\n"
    b"Transport: RTP/AVP/TCP;unicast;interleaved=0-1;mode=record\r\nCSeq: 3\r\n"
    b"User-Agent: Lavf59.27.100\r\n\r\n"
)

# live555 (VLC's RTSP client) request shape, written by hand: VLC cannot run as a client here.
VLC_SETUP = (
    b"SETUP rtsp://10.0.0.2:8554/movie/trackID=1 RTSP/1.0\r\nCSeq: 5\r\n"
    b"User-Agent: LibVLC/3.0.18 (LIVE555 Streaming Media v2021.08.24)\r\n"
    b"Transport: RTP/AVP/TCP;unicast;interleaved=2-3\r\nSession: 8C3D1F0A\r\n\r\n"
)


def parse_all(data: bytes, **limits: int) -> list[Event]:
    return MessageParser(**limits).feed(data)


def parse_bytewise(data: bytes, **limits: int) -> list[Event]:
    parser = MessageParser(**limits)
    events: list[Event] = []
    for i in range(len(data)):
        events += parser.feed(data[i : i + 1])
    return events


def test_ffmpeg_udp_session() -> None:
    events = parse_all(FFMPEG_UDP)
    assert [(e.method, e.cseq) for e in events] == [
        ("OPTIONS", 1),
        ("DESCRIBE", 2),
        ("SETUP", 3),
        ("PLAY", 4),
    ]
    setup, play = events[2], events[3]
    assert setup.uri == "rtsp://127.0.0.1:18554/test/trackID=0"
    assert setup.headers["transport"] == "RTP/AVP/UDP;unicast;client_port=11902-11903"
    assert play.headers["Range"] == "npt=0.000-"
    assert play.headers["SESSION"] == "12345678"
    assert parse_bytewise(FFMPEG_UDP) == events


def test_gstreamer_repeated_headers_are_kept_in_order() -> None:
    options, setup = parse_all(GSTREAMER_TCP)
    assert options.headers.getall("User-Agent") == [
        "GStreamer/1.22.0",
        "RealMedia Player Version 6.0.9.1235 (linux-2.0-libc6-i386-gcc2.95)",
    ]
    assert options.headers["PlayerStarttime"] == "[28/03/2003:22:50:23 00:00]"
    assert setup.cseq == 3
    assert setup.headers["Transport"] == "RTP/AVP/TCP;unicast;interleaved=0-1"


def test_ffmpeg_announce_body_then_setup() -> None:
    announce, setup = parse_all(FFMPEG_RECORD)
    assert announce.method == "ANNOUNCE"
    assert announce.body == FFMPEG_SDP
    assert len(FFMPEG_SDP) == 298
    assert setup.headers["Transport"].endswith("mode=record")
    assert parse_bytewise(FFMPEG_RECORD) == [announce, setup]


def test_vlc_setup() -> None:
    (setup,) = parse_all(VLC_SETUP)
    assert setup.cseq == 5
    assert setup.headers["Session"] == "8C3D1F0A"


# --- Leniency ----------------------------------------------------------------------------------------


def test_lf_only_folding_and_leading_blank_lines() -> None:
    data = b"\r\n\n\r\nGET_PARAMETER rtsp://h/a RTSP/1.0\nCSeq:7\nX-Long: first\n  second\n\tthird\n\n"
    (request,) = parse_all(data)
    assert request.method == "GET_PARAMETER"
    assert request.cseq == 7
    assert request.headers["X-Long"] == "first second third"


def test_mixed_line_endings_and_whitespace_around_values() -> None:
    data = b"OPTIONS * RTSP/1.0\r\nCSeq:   9  \nUser-Agent : x\r\n\n"
    (request,) = parse_all(data)
    assert request.uri == "*"
    assert request.headers["CSeq"] == "9"
    assert request.headers["User-Agent"] == "x"


def test_responses_and_versions() -> None:
    data = (
        b"RTSP/1.0 200 OK\r\nCSeq: 1\r\nContent-Length: 3\r\n\r\nabc"
        b"RTSP/2.0 454 Session Not Found\r\nCSeq: 2\r\n\r\n"
        b"RTSP/1.0 200\r\nCSeq: 3\r\n\r\n"
        b"HTTP/1.0 200 OK\r\nContent-Type: application/x-rtsp-tunnelled\r\n\r\n"
        b"TEARDOWN rtsp://h/a RTSP/2.0\r\nCSeq: 4\r\n\r\n"
    )
    events = parse_all(data)
    assert events[0] == Response(
        200, "OK", headers=CIMultiDict(CSeq="1", **{"Content-Length": "3"}), body=b"abc"
    )
    assert (events[1].status, events[1].reason, events[1].version) == (454, "Session Not Found", "RTSP/2.0")
    assert (events[2].status, events[2].reason, events[2].cseq) == (200, "", 3)
    assert (events[3].version, events[3].status) == ("HTTP/1.0", 200)
    assert isinstance(events[4], Request)
    assert events[4].version == "RTSP/2.0"


def test_http_request_detaches_the_rest_of_the_stream() -> None:
    data = b"POST /tunnel HTTP/1.0\r\nx-sessioncookie: abc\r\nContent-Length: 32767\r\n\r\nREVTQ1JJQkUg"
    parser = MessageParser()
    (request,) = parser.feed(data[:50]) + parser.feed(data[50:])
    assert (request.method, request.version, request.body) == ("POST", "HTTP/1.0", b"")
    assert parser.detached
    assert parser.feed(b"more") == []
    assert parser.detach() == b"REVTQ1JJQkUg"


# --- Interleaved frames ------------------------------------------------------------------------------


def test_interleaved_frames_between_messages() -> None:
    rtp = bytes(InterleavedFrame(0, b"\x80\x60" + bytes(300)))
    rtcp = bytes(InterleavedFrame(1, b""))
    options = FFMPEG_UDP[: FFMPEG_UDP.index(b"\r\n\r\n") + 4]
    data = rtp + b"\r\n" + options + rtcp + rtp
    events = parse_all(data)
    assert events == [
        InterleavedFrame(0, b"\x80\x60" + bytes(300)),
        parse_all(FFMPEG_UDP)[0],
        InterleavedFrame(1, b""),
        InterleavedFrame(0, b"\x80\x60" + bytes(300)),
    ]
    assert parse_bytewise(data) == events


def test_maximal_interleaved_frame() -> None:
    payload = bytes(range(256)) * 255 + bytes(255)
    assert len(payload) == 65535
    data = bytes(InterleavedFrame(255, payload))
    assert data[:4] == b"$\xff\xff\xff"
    parser = MessageParser(max_header_bytes=1024, max_body_bytes=1024)
    assert parser.feed(data[:30000]) == []
    assert parser.feed(data[30000:]) == [InterleavedFrame(255, payload)]
    assert parser.buffered == 0


# --- Errors and recovery -----------------------------------------------------------------------------

NEXT = b"OPTIONS * RTSP/1.0\r\nCSeq: 20\r\n\r\n"


@pytest.mark.parametrize(
    ("head", "status"),
    [
        (b"garbage\r\nCSeq: 11\r\n", 400),
        (b"DESCRIBE rtsp://h/a\r\nCSeq: 11\r\n", 400),
        (b"DESCRIBE rtsp://h/a RTSP/1.0 extra\r\nCSeq: 11\r\n", 400),
        (b"DESCRIBE rtsp://h/a RTSP/9.0\r\nCSeq: 11\r\n", 505),
        (b"DESCRIBE rtsp://h/a rtsp/1.0\r\nCSeq: 11\r\n", 400),
        (b"DESCR(BE rtsp://h/a RTSP/1.0\r\nCSeq: 11\r\n", 400),
        (b"RTSP/1.0 2000 OK\r\nCSeq: 11\r\n", 400),
        (b"DESCRIBE rtsp://h/a RTSP/1.0\r\nCSeq: 11\r\nno colon here\r\n", 400),
        (b"DESCRIBE rtsp://h/a RTSP/1.0\r\n folded first\r\nCSeq: 11\r\n", 400),
        (b"DESCRIBE rtsp://h/a RTSP/1.0\r\nCSeq: 11\r\nBad Name: x\r\n", 400),
        (b"DESCRIBE rtsp://h/a RTSP/1.0\r\nCSeq: 11\r\nX: a\rb\r\n", 400),
        (b"DESCRIBE rtsp://h/a RTSP/1.0\r\nCSeq: 11\r\n" + b"X: y\r\n" * 101, 400),
    ],
)
def test_malformed_block_is_skipped_with_its_body(head: bytes, status: int) -> None:
    data = head + b"Content-Length: 5\r\n\r\nRTSP/" + NEXT
    events = parse_all(data)
    assert events == [ParseError(status, events[0].reason, False, 11), parse_all(NEXT)[0]]
    assert events[0].reason
    assert parse_bytewise(data) == events


def test_cseq_absent_or_unparseable() -> None:
    (error,) = parse_all(b"bad line\r\nCSeq: x1\r\n\r\n")
    assert error.cseq is None
    (request,) = parse_all(b"OPTIONS * RTSP/1.0\r\nCSeq: -1\r\n\r\n")
    assert request.cseq is None
    assert Request("OPTIONS", "*").cseq is None


def test_header_block_too_large_is_fatal_and_keeps_cseq() -> None:
    data = b"OPTIONS * RTSP/1.0\r\nCSeq: 4\r\nX-Pad: " + b"a" * 500
    parser = MessageParser(max_header_bytes=256)
    (error,) = parser.feed(data)
    assert error == ParseError(400, error.reason, True, 4)
    assert parser.failed
    assert parser.feed(NEXT) == []
    assert parse_bytewise(data, max_header_bytes=256) == [error]


def test_header_limit_counts_the_terminator() -> None:
    block = b"OPTIONS * RTSP/1.0\r\nCSeq: 1\r\n\r\n"
    assert isinstance(parse_all(block, max_header_bytes=len(block))[0], Request)
    assert parse_all(block, max_header_bytes=len(block) - 1)[0].fatal


@pytest.mark.parametrize(
    ("length", "status"),
    [(b"2000", 413), (b"99999999999999999999999", 413), (b"-1", 400), (b"12abc", 400), (b"", 400)],
)
def test_bad_content_length_is_fatal(length: bytes, status: int) -> None:
    data = b"ANNOUNCE rtsp://h/a RTSP/1.0\r\nCSeq: 2\r\nContent-Length: " + length + b"\r\n\r\n" + NEXT
    parser = MessageParser(max_body_bytes=1000)
    (error,) = parser.feed(data)
    assert (error.status, error.fatal, error.cseq) == (status, True, 2)
    assert parser.feed(NEXT) == []


def test_conflicting_content_lengths_are_fatal() -> None:
    data = b"ANNOUNCE rtsp://h/a RTSP/1.0\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab"
    (error,) = parse_all(data)
    assert (error.status, error.fatal) == (400, True)
    (request,) = parse_all(data.replace(b": 2", b": 1") + b"b")
    assert request.body == b"a"


def test_memory_stays_bounded_under_floods() -> None:
    parser = MessageParser(max_header_bytes=1024, max_body_bytes=4096)
    events = parser.feed(b"x" * 5_000_000)
    assert [e.fatal for e in events] == [True]
    assert parser.buffered == 0
    parser = MessageParser(max_header_bytes=1024, max_body_bytes=4096)
    peak = 0
    for _ in range(2000):  # an endless stream of blank lines never accumulates
        parser.feed(b"\r\n" * 50)
        peak = max(peak, parser.buffered)
    assert peak == 0
    parser = MessageParser(max_header_bytes=1024, max_body_bytes=4096)
    parser.feed(b"ANNOUNCE * RTSP/1.0\r\nContent-Length: 4096\r\n\r\n" + b"v" * 4000)
    assert parser.buffered <= 4096


def test_skipped_body_is_not_buffered() -> None:
    parser = MessageParser(max_body_bytes=100_000)
    assert parser.feed(b"bad\r\nContent-Length: 100000\r\n\r\n")[0].status == 400
    for _ in range(99):
        assert parser.feed(b"z" * 1000) == []
        assert parser.buffered == 0
    assert parser.feed(b"z" * 1000 + NEXT)[0].cseq == 20


# --- Serialisation -----------------------------------------------------------------------------------


def test_request_bytes() -> None:
    request = Request(
        "ANNOUNCE",
        "rtsp://h/a",
        headers=[("CSeq", "3"), ("Content-Type", "application/sdp")],
        body=b"v=0\r\n",
    )
    assert bytes(request) == (
        b"ANNOUNCE rtsp://h/a RTSP/1.0\r\nCSeq: 3\r\nContent-Type: application/sdp\r\n"
        b"Content-Length: 5\r\n\r\nv=0\r\n"
    )
    assert "Content-Length" not in request.headers  # serialising does not change the message
    stale = Request("ANNOUNCE", "*", headers={"content-length": "99", "CSeq": "1"}, body=b"ab")
    assert bytes(stale).startswith(b"ANNOUNCE * RTSP/1.0\r\nContent-Length: 2\r\nCSeq: 1\r\n")


def test_response_bytes_and_default_reason() -> None:
    assert Response(461).reason == "Unsupported Transport"
    assert bytes(Response(200, headers={"CSeq": "1"})) == b"RTSP/1.0 200 OK\r\nCSeq: 1\r\n\r\n"
    assert Response(200, headers={"CSeq": "1"}).cseq == 1
    assert bytes(Response(599)).startswith(b"RTSP/1.0 599 Unknown\r\n")


def test_interleaved_frame_bytes() -> None:
    assert bytes(InterleavedFrame(1, b"abc")) == b"$\x01\x00\x03abc"
    with pytest.raises(ValueError):
        bytes(InterleavedFrame(256, b""))
    with pytest.raises(ValueError):
        bytes(InterleavedFrame(0, bytes(65536)))


@pytest.mark.parametrize(
    "message",
    [
        Request("OPTIONS", "*", headers={"X": "a\r\nInjected: 1"}),
        Request("OPTIONS", "*", headers={"Bad Name": "a"}),
        Request("OPT IONS", "*"),
        Request("$OPTIONS", "*"),
        Request("OPTIONS", "rtsp://h/a b"),
        Request("OPTIONS", "*", version="RTSP 1.0"),
        Response(200, "OK\r\nX: 1"),
        Response(42),
    ],
)
def test_serialisation_refuses_header_injection(message: Request | Response) -> None:
    with pytest.raises(ValueError):
        bytes(message)


# --- Properties --------------------------------------------------------------------------------------

_TOKEN = st.text(
    "!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz", min_size=1, max_size=12
)
_TEXT = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n\x00"), max_size=30
).map(lambda s: s.strip(" \t"))
_URI = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters=" \t\r\n\x00\x7f"),
    min_size=1,
    max_size=40,
).filter(lambda s: all(ord(c) > 0x20 for c in s))
_HEADERS = st.lists(st.tuples(_TOKEN.filter(lambda n: n.lower() != "content-length"), _TEXT), max_size=6)
_VERSION = st.sampled_from(["RTSP/1.0", "RTSP/2.0"])

requests = st.builds(
    lambda m, u, v, h, b: Request(m, u, v, CIMultiDict(h), b),
    _TOKEN.filter(lambda m: not m.startswith("$")),  # '$' starts an interleaved frame
    _URI,
    _VERSION,
    _HEADERS,
    st.binary(max_size=60),
)
responses = st.builds(
    lambda s, r, v, h, b: Response(s, r, v, CIMultiDict(h), b),
    st.integers(100, 999),
    _TEXT,
    _VERSION,
    _HEADERS,
    st.binary(max_size=60),
)
frames = st.builds(InterleavedFrame, st.integers(0, 255), st.binary(max_size=300))


def _with_length(message: Request | Response) -> Request | Response:
    """What the parser sees: serialising adds Content-Length when there is a body."""
    if message.body:
        message.headers["Content-Length"] = str(len(message.body))
    return message


def _split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]


@given(st.one_of(requests, responses))
def test_message_round_trip(message: Request | Response) -> None:
    (parsed,) = parse_all(bytes(message))
    assert parsed == _with_length(message)


@given(
    st.lists(st.one_of(requests, responses, frames), max_size=8),
    st.lists(st.integers(0, 10_000), max_size=12),
)
@settings(max_examples=150)
def test_any_split_of_a_valid_stream_gives_the_same_events(items: list[Event], cuts: list[int]) -> None:
    data = b"".join(bytes(item) for item in items)
    expected = [item if isinstance(item, InterleavedFrame) else _with_length(item) for item in items]
    assert parse_all(data) == expected
    parser = MessageParser()
    events: list[Event] = []
    for piece in _split(data, cuts):
        events += parser.feed(piece)
    assert events == expected


_NOISE = st.sampled_from(
    [
        b"\r\n",
        b"\n",
        b"$",
        b"$\x00\x00\x02",
        b"RTSP/1.0 ",
        b"OPTIONS * RTSP/1.0",
        b"Content-Length: 3",
        b"CSeq: 1",
        b": ",
        b" ",
    ]
)
_CHAOS = st.lists(
    st.one_of(st.binary(max_size=20), _NOISE, requests.map(bytes), frames.map(bytes)), max_size=12
).map(b"".join)


@given(_CHAOS, st.lists(st.integers(0, 10_000), max_size=10))
@settings(max_examples=300)
def test_arbitrary_bytes_never_raise_and_splits_do_not_matter(data: bytes, cuts: list[int]) -> None:
    limits = {"max_header_bytes": 120, "max_body_bytes": 50, "max_headers": 4}
    whole = parse_all(data, **limits)
    assert all(isinstance(e, Request | Response | InterleavedFrame | ParseError) for e in whole)
    assert not any(isinstance(e, ParseError) and "internal" in e.reason for e in whole)
    assert sum(isinstance(e, ParseError) and e.fatal for e in whole) <= 1
    parser = MessageParser(**limits)
    pieces: list[Event] = []
    for piece in _split(data, cuts):
        pieces += parser.feed(piece)
        assert parser.buffered <= 120 + 50 + 8192 or parser.detached
    assert pieces == whole
