"""What a publisher's (or an upstream's) SDP becomes: tracks taken apart, or relayed as they are."""

from __future__ import annotations

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from sdp import SdpParseError, static_rtpmap
from sdp import parse as parse_sdp
from streamd.live.announced import announced_tracks
from streamd.rtsp.errors import RtspError

HEAD = "v=0\r\no=- 0 0 IN IP4 192.0.2.1\r\ns=cam\r\nt=0 0\r\n"


def tracks(media: str):  # type: ignore[no-untyped-def]
    return announced_tracks(parse_sdp((HEAD + media).encode()).media)


def test_static_payload_types_need_no_rtpmap() -> None:
    """IP cameras announce G.711 as "m=audio 0 RTP/AVP 0" with no a=rtpmap (RFC 3551 table 4)."""
    (pcmu,) = tracks("m=audio 0 RTP/AVP 0\r\na=control:track2\r\n")
    assert (pcmu.control, pcmu.payload_format.payload_type, pcmu.depacketize) == ("track2", 0, False)
    assert pcmu.payload_format.rtpmap() == "0 PCMU/8000/1" and pcmu.payload_format.clock_rate == 8000
    (mpa,) = tracks("m=audio 0 RTP/AVP 14\r\n")
    assert mpa.payload_format.rtpmap() == "14 MPA/90000" and mpa.payload_format.clock_rate == 90000


def test_a_dynamic_type_without_rtpmap_is_refused() -> None:
    with pytest.raises(RtspError) as refused:
        tracks("m=video 0 RTP/AVP 96\r\n")
    assert refused.value.status == 400 and "without a=rtpmap" in refused.value.reason


def test_the_static_table() -> None:
    assert static_rtpmap(8) is not None and static_rtpmap(8).encoding_name == "PCMA"  # type: ignore[union-attr]
    assert static_rtpmap(33) is not None and static_rtpmap(33).clock_rate == 90000  # type: ignore[union-attr]
    assert static_rtpmap(1) is None and static_rtpmap(20) is None and static_rtpmap(96) is None


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["audio", "video", "application"]),
            st.integers(0, 130),
            st.one_of(st.none(), st.text(min_size=0, max_size=30)),
            st.one_of(st.none(), st.text(min_size=0, max_size=30)),
        ),
        max_size=4,
    )
)
@example([("audio", 96, "L16/0/0", None)])  # clock rate 0: ZeroDivisionError, a 500
@example([("audio", 96, "foo/8000", "a=\x00b")])  # NUL relayed into every reader's SDP
@settings(max_examples=300, deadline=None)
def test_any_announced_media_is_tracks_or_a_400(
    sections: list[tuple[str, int, str | None, str | None]],
) -> None:
    """Network input: whatever the m=, rtpmap and fmtp lines say, the answer is tracks or a 400."""
    text = ""
    for media, pt, rtpmap, fmtp in sections:
        text += f"m={media} 0 RTP/AVP {pt}\r\n"
        if rtpmap is not None:
            text += f"a=rtpmap:{pt} {rtpmap}\r\n".replace("\n", " ").replace("\r", " ") + "\r\n"
        if fmtp is not None:
            text += f"a=fmtp:{pt} {fmtp}".replace("\n", " ").replace("\r", " ") + "\r\n"
    try:
        description = parse_sdp((HEAD + text).encode())
    except SdpParseError:
        return
    try:
        announced_tracks(description.media)
    except RtspError as exc:
        assert exc.status == 400


@pytest.mark.parametrize("payload_type", ["\u00b2", "\u0661", "96\u0661", "0096"])
def test_payload_types_are_ascii_digits_or_a_400(payload_type: str) -> None:
    """``"²".isdigit()`` is True but ``int("²")`` raises: once a 500 with a traceback."""
    description = parse_sdp((HEAD + f"m=audio 0 RTP/AVP {payload_type}\r\n").encode())
    with pytest.raises(RtspError) as refused:
        announced_tracks(description.media)
    assert refused.value.status == 400


@pytest.mark.parametrize(
    "section",
    [
        "m=audio 0 RTP/AVP 96\r\na=rtpmap:96 foo/8000\r\na=fmtp:96 a=\x00b\r\n",  # relayed: DESCRIBE 500
        "m=audio 0 RTP/AVP 96\r\na=rtpmap:96 L16/0/0\r\n",
        "m=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/0\r\n",
    ],
)
def test_announced_sections_a_reader_could_not_be_given_are_a_400(section: str) -> None:
    with pytest.raises(RtspError) as refused:
        announced_tracks(parse_sdp((HEAD + section).encode()).media)
    assert refused.value.status == 400
