"""WHEP offer/answer without a socket: codec choice per m-line, the answer's lines, bad offers."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sdp import parse as parse_sdp
from streamd.rtsp.errors import RtspError
from streamd.webrtc.negotiate import Sendable, answer_sdp, negotiate, negotiate_publish, parse_offer

# the shape of Chromium's recvonly offer (two transceivers and a data channel), trimmed
CHROME_OFFER = "\r\n".join(
    [
        "v=0",
        "o=- 4611731400430051336 2 IN IP4 127.0.0.1",
        "s=-",
        "t=0 0",
        "a=group:BUNDLE 0 1 2",
        "a=msid-semantic: WMS",
        "m=video 9 UDP/TLS/RTP/SAVPF 96 97 102 103 104 105 106 107 108 109 45 46",
        "c=IN IP4 0.0.0.0",
        "a=rtcp:9 IN IP4 0.0.0.0",
        "a=candidate:1 1 udp 2122260223 192.0.2.9 50000 typ host generation 0",
        "a=ice-ufrag:abcd",
        "a=ice-pwd:0123456789abcdefghijklmn",
        "a=ice-options:trickle",
        "a=fingerprint:sha-256 " + ":".join(["AB"] * 32),
        "a=setup:actpass",
        "a=mid:0",
        "a=recvonly",
        "a=rtcp-mux",
        "a=rtpmap:96 VP8/90000",
        "a=rtcp-fb:96 goog-remb",
        "a=rtcp-fb:96 nack",
        "a=rtcp-fb:96 nack pli",
        "a=rtcp-fb:96 ccm fir",
        "a=rtpmap:97 rtx/90000",
        "a=fmtp:97 apt=96",
        "a=rtpmap:102 H264/90000",
        "a=rtcp-fb:102 nack",
        "a=rtcp-fb:102 nack pli",
        "a=fmtp:102 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42001f",
        "a=rtpmap:103 rtx/90000",
        "a=fmtp:103 apt=102",
        "a=rtpmap:104 H264/90000",
        "a=fmtp:104 level-asymmetry-allowed=1;packetization-mode=0;profile-level-id=42001f",
        "a=rtpmap:105 rtx/90000",
        "a=rtpmap:106 H264/90000",
        "a=rtcp-fb:106 nack pli",
        "a=fmtp:106 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=640034",
        "a=rtpmap:107 rtx/90000",
        "a=rtpmap:108 VP9/90000",
        "a=fmtp:108 profile-id=0",
        "a=rtpmap:109 rtx/90000",
        "a=rtpmap:45 AV1/90000",
        "a=rtpmap:46 rtx/90000",
        "m=audio 9 UDP/TLS/RTP/SAVPF 111 0 8",
        "c=IN IP4 0.0.0.0",
        "a=ice-ufrag:abcd",
        "a=ice-pwd:0123456789abcdefghijklmn",
        "a=setup:actpass",
        "a=mid:1",
        "a=recvonly",
        "a=rtcp-mux",
        "a=rtpmap:111 opus/48000/2",
        "a=fmtp:111 minptime=10;useinbandfec=1",
        "a=rtpmap:0 PCMU/8000",
        "a=rtpmap:8 PCMA/8000",
        "m=application 9 UDP/DTLS/SCTP webrtc-datachannel",
        "c=IN IP4 0.0.0.0",
        "a=mid:2",
        "a=sctp-port:5000",
        "",
    ]
)

H264_HIGH = Sendable(0, "video", "h264", 90000, "640028")
OPUS = Sendable(1, "audio", "opus", 48000)
AAC = Sendable(1, "audio", "aac", 48000, why_not="browsers take no aac over WebRTC")


def test_chrome_offer_is_read() -> None:
    offer = parse_offer(CHROME_OFFER)
    assert (offer.ice_ufrag, offer.ice_pwd, offer.setup) == ("abcd", "0123456789abcdefghijklmn", "actpass")
    assert offer.fingerprints[0][0] == "sha-256"
    assert offer.candidates == ("1 1 udp 2122260223 192.0.2.9 50000 typ host generation 0",)
    assert [s.kind for s in offer.sections] == ["video", "audio", "application"]
    video = offer.sections[0]
    assert [c.encoding for c in video.codecs][:3] == ["VP8", "RTX", "H264"]


def test_h264_goes_to_the_same_profile_with_packetization_mode_1() -> None:
    plan = negotiate(parse_offer(CHROME_OFFER), [H264_HIGH, OPUS])
    video, audio = plan.choices
    assert (video.section, video.track, video.codec.payload_type) == (0, 0, 106)
    assert (audio.section, audio.track, audio.codec.payload_type) == (1, 1, 111)
    baseline = Sendable(0, "video", "h264", 90000, "42c01e")
    assert negotiate(parse_offer(CHROME_OFFER), [baseline]).choices[0].codec.payload_type == 102


@pytest.mark.parametrize(("codec", "pt"), [("vp8", 96), ("vp9", 108), ("av1", 45)])
def test_other_video_codecs_pass_through(codec: str, pt: int) -> None:
    plan = negotiate(parse_offer(CHROME_OFFER), [Sendable(0, "video", codec, 90000)])
    assert plan.choices[0].codec.payload_type == pt


def test_g711_uses_the_static_type() -> None:
    plan = negotiate(parse_offer(CHROME_OFFER), [Sendable(3, "audio", "pcm_alaw", 8000)])
    assert plan.choices[0].codec.payload_type == 8


def test_answer_names_ssrcs_rejects_the_rest_and_reads_back() -> None:
    plan = negotiate(parse_offer(CHROME_OFFER), [H264_HIGH, AAC])
    assert plan.left_out == ("track 1 (aac): browsers take no aac over WebRTC",)
    text = answer_sdp(
        plan,
        ice_ufrag="uf",
        ice_pwd="pw" * 11,
        fingerprint=("sha-256", "AB:CD"),
        candidates=["1 1 udp 1 192.0.2.2 40000 typ host"],
        ssrcs={0: 1234},
        cname="c",
        session_id=7,
    )
    answer = parse_sdp(text)
    assert answer.get("group") == "BUNDLE 0"
    video, audio, data = answer.media
    assert (video.port, video.formats, video.get("setup"), video.has("sendonly")) == (
        9,
        ["106"],
        "passive",
        True,
    )
    assert video.get("fmtp") == "106 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=640034"
    assert video.get_all("rtcp-fb") == ["106 nack pli"]  # only what was offered and we do
    assert "1234 cname:c" in video.get_all("ssrc")
    assert (audio.port, audio.get("mid")) == (0, "1")
    assert (data.port, data.get("mid")) == (0, "2")


def test_offerer_that_wants_to_be_dtls_server() -> None:
    offer = parse_offer(CHROME_OFFER.replace("a=setup:actpass", "a=setup:passive"))
    plan = negotiate(offer, [OPUS])
    text = answer_sdp(
        plan, ice_ufrag="u", ice_pwd="p", fingerprint=("sha-256", "AB"), candidates=[], ssrcs={1: 5},
        cname="c", session_id=1,
    )  # fmt: skip
    assert "a=setup:active" in text


def test_no_common_codec_is_415_with_the_reason() -> None:
    hevc = Sendable(0, "video", "hevc", 90000, why_not="browsers take no hevc over WebRTC")
    with pytest.raises(RtspError) as info:
        negotiate(parse_offer(CHROME_OFFER), [hevc, AAC])
    assert info.value.status == 415
    assert "hevc" in info.value.reason and "aac" in info.value.reason and "H264/90000" in info.value.reason
    audio_only = (
        CHROME_OFFER.split("m=video")[0]
        + "a=fingerprint:sha-256 AB\r\nm=audio"
        + CHROME_OFFER.split("m=audio")[1]
    )
    with pytest.raises(RtspError) as info:
        negotiate(parse_offer(audio_only), [H264_HIGH])
    assert info.value.status == 415


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("", "empty"),
        ("hello", "v=0"),
        ("v=0\r\ns=-\r\n", "no m-lines"),
        (CHROME_OFFER.replace("a=ice-ufrag:abcd\r\n", ""), "ICE credentials"),
        (CHROME_OFFER.replace("a=fingerprint:", "a=x-fingerprint:"), "fingerprint"),
        (CHROME_OFFER.replace("a=setup:actpass", "a=setup:holdconn"), "setup"),
        (CHROME_OFFER.replace("a=mid:0", "a=mid:a b"), "mid"),
    ],
)
def test_malformed_offers_are_400(text: str, why: str) -> None:
    with pytest.raises(RtspError) as info:
        parse_offer(text)
    assert info.value.status == 400
    assert why in info.value.reason


@settings(max_examples=300)
@given(st.text(max_size=400))
def test_any_text_is_an_offer_or_a_400(text: str) -> None:
    try:
        offer = parse_offer(text)
    except RtspError as exc:
        assert exc.status == 400
        return
    try:
        negotiate(offer, [H264_HIGH, OPUS])
    except RtspError as exc:
        assert exc.status == 415


@settings(max_examples=200)
@given(st.lists(st.sampled_from(CHROME_OFFER.split("\r\n")), max_size=60))
def test_shuffled_offer_lines_are_an_offer_or_a_400(lines: list[str]) -> None:
    try:
        offer = parse_offer("v=0\r\n" + "\r\n".join(lines))
    except RtspError as exc:
        assert exc.status == 400
        return
    try:
        plan = negotiate(offer, [H264_HIGH, OPUS])
    except RtspError as exc:
        assert exc.status == 415
        return
    answer_sdp(
        plan, ice_ufrag="u", ice_pwd="p", fingerprint=("sha-256", "AB"), candidates=[], ssrcs={0: 1, 1: 2},
        cname="c", session_id=1,
    )  # fmt: skip


def test_whip_offer_keeps_h264_then_vp8_and_opus() -> None:
    sending = CHROME_OFFER.replace("a=recvonly", "a=sendonly")
    plan = negotiate_publish(parse_offer(sending))
    assert [(c.section, c.codec.encoding, c.codec.payload_type) for c in plan.choices] == [
        (0, "H264", 102),
        (1, "OPUS", 111),
    ]
    answer = answer_sdp(
        plan, ice_ufrag="u", ice_pwd="p", fingerprint=("sha-256", "AB"), candidates=[], ssrcs={}, cname="c",
        session_id=1, receive=True,
    )  # fmt: skip
    assert answer.count("a=recvonly") == 2 and "a=ssrc" not in answer
    with pytest.raises(RtspError) as info:
        negotiate_publish(parse_offer(CHROME_OFFER))  # recvonly: nothing is sent to us
    assert info.value.status == 415
