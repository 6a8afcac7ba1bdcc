"""RTSP: the message parser (requests, responses, ``$`` frames), every header grammar, request
URIs, parameter bodies, and the client's side (responses, challenges)."""

from __future__ import annotations

from fractions import Fraction

from streamd.rtsp.client import Answered, ClientProtocol, ServerRequest, parse_challenges
from streamd.rtsp.errors import RtspError
from streamd.rtsp.headers.range import NptRange, format_range, parse_range
from streamd.rtsp.headers.rate import format_rate, parse_rate
from streamd.rtsp.headers.rtp_info import RtpInfoEntry, format_rtp_info, parse_rtp_info
from streamd.rtsp.headers.session import format_session, parse_session
from streamd.rtsp.headers.transport import TransportSpec, format_transport, parse_transport
from streamd.rtsp.message import InterleavedFrame, Request, Response
from streamd.rtsp.parameters import parameter_names, parameter_values
from streamd.rtsp.parser import MessageParser, ParseError
from streamd.rtsp.url import request_path, split_control

from .common import chunks, header_text, text

try:  # issue 14's header parser arrives with another branch; its target is registered once it is here
    from streamd.auth import credentials as _credentials
except ImportError:
    _credentials = None

# Small limits so short inputs reach them; the memory bound is what the parser promises.
_HEAD, _BODY = 2048, 4096


def fuzz_rtsp_parser(data: bytes) -> None:
    """Any byte stream, split anywhere: events only (``feed`` never raises), the same events as
    when fed whole, memory within the limits, and no internal error behind a 400."""
    split = MessageParser(max_header_bytes=_HEAD, max_body_bytes=_BODY, max_headers=20)
    events = []
    for piece in chunks(data):
        events += split.feed(piece)
        assert split.buffered <= _HEAD + _BODY + 8192, split.buffered
    whole = MessageParser(max_header_bytes=_HEAD, max_body_bytes=_BODY, max_headers=20)
    assert whole.feed(data[1:]) == events
    for event in events:
        assert isinstance(event, Request | Response | InterleavedFrame | ParseError), event
        if isinstance(event, ParseError):
            assert not event.reason.startswith("internal parser error"), event.reason
            assert 400 <= event.status <= 599
        elif isinstance(event, Request | Response):
            assert len(event.body) <= _BODY
            bytes(event)  # what we parsed can be written again (the relay forwards messages)
    if split.detached:
        assert isinstance(split.detach(), bytes)


def _header(data: bytes, parse, *statuses: int):  # type: ignore[no-untyped-def]
    try:
        return parse(header_text(data))
    except RtspError as exc:
        assert exc.status in statuses, exc.status
        return None


def fuzz_transport(data: bytes) -> None:
    """``parse_transport``: alternatives or 461. Each can be written; a reply carrying the numbers
    a server copies from the offer (ports, channels, ttl) reads back the same."""
    specs = _header(data, parse_transport, 461)
    for spec in specs or ():
        assert isinstance(spec, TransportSpec)
        assert "\r" not in format_transport(spec) and "\n" not in format_transport(spec)
        reply = TransportSpec(
            spec.profile, spec.lower_transport, spec.cast, spec.client_port, spec.server_port,
            spec.interleaved, spec.port, spec.ttl, ssrc=spec.ssrc,
        )  # fmt: skip
        assert parse_transport(format_transport(reply)) == [reply]


def fuzz_range(data: bytes) -> None:
    """``parse_range``: an npt range or 457; what we parsed formats and reads back equal."""
    r = _header(data, parse_range, 457)
    if r is not None:
        assert isinstance(r, NptRange)
        assert r.start is None or r.start >= 0
        again = parse_range(format_range(r))
        assert again.start_is_now == r.start_is_now


def fuzz_session(data: bytes) -> None:
    """``parse_session``: (id, timeout) or 454; the id is one we could echo."""
    parsed = _header(data, parse_session, 454)
    if parsed is not None:
        session_id, timeout = parsed
        assert timeout is None or timeout >= 0
        format_session(session_id, timeout)


def fuzz_rtp_info(data: bytes) -> None:
    """``parse_rtp_info`` never raises; numbers are within their fields."""
    entries = parse_rtp_info(header_text(data))
    for entry in entries:
        assert isinstance(entry, RtpInfoEntry) and entry.url
        assert entry.seq is None or 0 <= entry.seq <= 0xFFFF
        assert entry.rtptime is None or 0 <= entry.rtptime <= 0xFFFFFFFF
    format_rtp_info(entries)


def fuzz_rate(data: bytes) -> None:
    """Scale / Speed: a Fraction or 400."""
    value = _header(data, lambda t: parse_rate(t, "Scale"), 400)
    if value is not None:
        assert isinstance(value, Fraction)
        format_rate(value)


def fuzz_parameters(data: bytes) -> None:
    """GET_/SET_PARAMETER bodies: names / values, or 400."""
    for parse in (parameter_names, parameter_values):
        try:
            parse(data)
        except RtspError as exc:
            assert exc.status == 400


def fuzz_request_uri(data: bytes) -> None:
    """Request URIs: a path (then split into presentation and track), or 400/414."""
    path = _header(data, request_path, 400, 414)
    if path is not None:
        split_control(path)


def fuzz_www_authenticate(data: bytes) -> None:
    """The relay reading a camera's challenges: never raises."""
    for challenge in parse_challenges(text(data).split("\n")):
        assert challenge.scheme == challenge.scheme.lower()


def fuzz_rtsp_client(data: bytes) -> None:
    """What a server (a camera the relay pulls from) sends back, split anywhere: events, or
    ``RtspError`` (502 for an unreadable message, 454 for a bad Session); a 401 may be answered."""
    client = ClientProtocol("rtsp://user:pa%3Ass@camera.example:554/stream")
    for method in ("OPTIONS", "DESCRIBE", "SETUP", "PLAY"):
        client.request(method)
    try:
        for piece in chunks(data):
            for event in client.feed(piece):
                assert isinstance(event, Answered | ServerRequest | InterleavedFrame)
                if isinstance(event, ServerRequest):
                    bytes(client.reply_to(event))
                elif isinstance(event, Answered) and client.authenticate(event.response):
                    request = client.request(event.request.method)
                    assert "Authorization" in request.headers
                    bytes(request)
    except RtspError as exc:
        assert exc.status in (502, 454), exc


def fuzz_authorization(data: bytes) -> None:
    """The ``Authorization`` header (issue 14, ``streamd.auth.credentials``): Basic or Digest
    credentials, or CredentialsError (the server answers a fresh 401)."""
    assert _credentials is not None, "streamd.auth.credentials is not there yet"
    try:
        credentials = _credentials.parse_authorization(header_text(data))
    except _credentials.CredentialsError:
        return
    assert isinstance(credentials, _credentials.Basic | _credentials.Digest)
    if isinstance(credentials, _credentials.Digest):
        assert all(name == name.lower() for name in credentials.params)
