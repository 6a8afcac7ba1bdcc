from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streamd.rtsp.client import (
    Answered,
    Challenge,
    ClientProtocol,
    ServerRequest,
    control_url,
    parse_challenges,
    split_credentials,
)
from streamd.rtsp.errors import RtspError
from streamd.rtsp.message import InterleavedFrame, Response


def answer(client: ClientProtocol, cseq: int, status: int = 200, **headers: str) -> list:
    response = Response(status, headers={"CSeq": str(cseq), **headers})
    return client.feed(bytes(response))


def test_cseq_session_and_credentials_bookkeeping() -> None:
    client = ClientProtocol("rtsp://user:p%40ss@cam:554/stream", user_agent="t")
    assert client.url == "rtsp://cam:554/stream" and (client.username, client.password) == ("user", "p@ss")
    options = client.request("OPTIONS")
    assert (
        options.uri == "rtsp://cam:554/stream" and options.cseq == 1 and options.headers["User-Agent"] == "t"
    )
    [event] = answer(client, 1, Public="OPTIONS, DESCRIBE, GET_PARAMETER")
    assert isinstance(event, Answered) and event.request is options
    assert "GET_PARAMETER" in client.public
    setup = client.request("SETUP", "rtsp://cam:554/stream/track1")
    assert setup.cseq == 2 and "Session" not in setup.headers
    answer(client, 2, Session="abcdef12;timeout=30")
    assert client.session == "abcdef12" and client.session_timeout == 30
    assert client.request("PLAY").headers["Session"] == "abcdef12"
    assert answer(client, 99) == [], "an answer to nothing we asked is ignored"


def test_server_requests_and_interleaved_frames() -> None:
    client = ClientProtocol("rtsp://cam/stream")
    data = bytes(InterleavedFrame(0, b"rtp")) + b"OPTIONS * RTSP/1.0\r\nCSeq: 7\r\n\r\n"
    data += b"REDIRECT rtsp://cam/stream RTSP/1.0\r\nCSeq: 8\r\nLocation: rtsp://b/stream\r\n\r\n"
    frame, options, redirect = client.feed(data)
    assert frame == InterleavedFrame(0, b"rtp")
    assert isinstance(options, ServerRequest) and isinstance(redirect, ServerRequest)
    ok = client.reply_to(options)
    assert ok.status == 200 and ok.headers["CSeq"] == "7"
    assert client.reply_to(redirect).status == 501


def test_digest_rfc2617_example() -> None:
    """The worked example of RFC 2617 section 3.5."""
    client = ClientProtocol(
        "rtsp://Mufasa:Circle%20Of%20Life@host/dir", random_bytes=lambda n: bytes.fromhex("0a4f113b")
    )
    client.request("GET", "/dir/index.html")
    challenge = (
        'Digest realm="testrealm@host.com", qop="auth,auth-int", '
        'nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", opaque="5ccc069c403ebaf9f0171e9517f40e41"'
    )
    [event] = answer(client, 1, 401, **{"WWW-Authenticate": challenge})
    assert client.authenticate(event.response)
    header = client.request("GET", "/dir/index.html").headers["Authorization"]
    assert header.startswith("Digest ")
    assert 'response="6629fae49393a05397450978507c4ef1"' in header
    assert "nc=00000001" in header and 'cnonce="0a4f113b"' in header
    assert 'opaque="5ccc069c403ebaf9f0171e9517f40e41"' in header and 'uri="/dir/index.html"' in header
    # the same challenge again means the password is wrong: do not loop
    [event] = answer(client, 2, 401, **{"WWW-Authenticate": challenge})
    assert not client.authenticate(event.response)


def test_basic_only_when_nothing_else_and_no_credentials_no_retry() -> None:
    client = ClientProtocol("rtsp://u:pw@cam/s")
    client.request("DESCRIBE")
    [event] = answer(client, 1, 401, **{"WWW-Authenticate": 'Basic realm="cam"'})
    assert client.authenticate(event.response)
    assert client.request("DESCRIBE").headers["Authorization"] == "Basic dTpwdw=="
    anonymous = ClientProtocol("rtsp://cam/s")
    anonymous.request("DESCRIBE")
    [event] = answer(anonymous, 1, 401, **{"WWW-Authenticate": 'Basic realm="cam"'})
    assert not anonymous.authenticate(event.response)


def test_challenges_in_one_header() -> None:
    got = parse_challenges(['Digest realm="a, b", nonce="n\\"x", algorithm=MD5, Basic realm="c"'])
    assert got == [
        Challenge("digest", {"realm": "a, b", "nonce": 'n"x', "algorithm": "MD5"}),
        Challenge("basic", {"realm": "c"}),
    ]


@given(st.text(max_size=200))
def test_challenge_parser_never_raises(text: str) -> None:
    parse_challenges([text])


_names = st.from_regex(r"[a-z][a-z0-9_-]{0,8}", fullmatch=True)
_values = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=20)


@given(st.dictionaries(_names, _values, max_size=5))
def test_quoted_challenge_round_trip(params: dict[str, str]) -> None:
    def quote(value: str) -> str:
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'

    header = "Digest " + ", ".join(f"{k}={quote(v)}" for k, v in params.items())
    assert parse_challenges([header]) == [Challenge("digest", params)]


@given(st.binary(max_size=300))
def test_feed_yields_events_or_a_502(data: bytes) -> None:
    client = ClientProtocol("rtsp://cam/s")
    try:
        client.feed(data)
    except RtspError as exc:
        assert exc.status == 502


@pytest.mark.parametrize(
    ("base", "control", "url"),
    [
        ("rtsp://a/s/", "trackID=1", "rtsp://a/s/trackID=1"),
        ("rtsp://a/s", "track1", "rtsp://a/s/track1"),  # cameras: a base without its slash
        ("rtsp://a/s/", "rtsp://b/x/t", "rtsp://b/x/t"),
        ("rtsp://a/s/", "*", "rtsp://a/s/"),
        ("rtsp://a/s/", None, "rtsp://a/s/"),
    ],
)
def test_control_url(base: str, control: str | None, url: str) -> None:
    assert control_url(base, control) == url


def test_split_credentials_without_userinfo() -> None:
    assert split_credentials("rtsp://a:1/x") == ("rtsp://a:1/x", None, None)
