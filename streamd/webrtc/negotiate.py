"""WHEP offer/answer, sans-I/O: which of a path's tracks go to which m-line, with which codec.

A browser's offer lists, per m-line, the codecs it can decode. We answer only what the path can
be sent as without re-encoding (H.264 with packetization-mode 1, VP8, VP9, AV1, Opus, G.711),
each path track in at most one m-line of its kind, and reject every other m-line (port 0). The
payload type is the browser's: the per-viewer sender rewrites it, nothing is re-packetized. An
offer we cannot read is a 400, one that has nothing in common with the path a 415 with the reason.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from sdp import parse as parse_sdp
from sdp.model import MediaDescription, SessionDescription
from sdp.parser import SdpParseError
from streamd.rtsp.errors import RtspError

MAX_OFFER_BYTES = 64 * 1024
MAX_SECTIONS = 32
MAX_CANDIDATES = 64  # per offer: more is not a browser

# FFmpeg codec name -> the encoding name browsers use in rtpmap (case-insensitive there)
BROWSER_ENCODINGS = {
    "h264": "H264",
    "vp8": "VP8",
    "vp9": "VP9",
    "av1": "AV1",
    "opus": "OPUS",
    "pcm_mulaw": "PCMU",
    "pcm_alaw": "PCMA",
}
STATIC_TYPES = {0: ("PCMU", 8000), 8: ("PCMA", 8000)}
FEEDBACK = ("nack", "nack pli", "ccm fir")  # what we answer (NACK from history, PLI/FIR: a keyframe)


@dataclass(frozen=True)
class Sendable:
    """One track of the path as WebRTC could carry it."""

    index: int
    kind: str  # "audio" | "video"
    codec: str  # FFmpeg name
    clock_rate: int
    profile_level_id: str | None = None  # H.264: hex of SPS bytes 1-3
    why_not: str | None = None  # set when browsers cannot take it as it is (B-frames, HEVC, AAC)


@dataclass(frozen=True)
class OfferedCodec:
    payload_type: int
    encoding: str  # upper case
    clock_rate: int
    channels: int | None
    fmtp: str  # as offered (echoed in the answer)
    params: dict[str, str]
    feedback: tuple[str, ...]


@dataclass(frozen=True)
class OfferedSection:
    kind: str
    mid: str
    proto: str
    formats: tuple[str, ...]
    direction: str
    codecs: tuple[OfferedCodec, ...]
    sctp_port: int | None = None  # a data channel section's a=sctp-port


@dataclass(frozen=True)
class Offer:
    sections: tuple[OfferedSection, ...]
    ice_ufrag: str
    ice_pwd: str
    ice_lite: bool
    fingerprints: tuple[tuple[str, str], ...]  # (algorithm, value)
    setup: str  # the offerer's a=setup: actpass | active | passive
    candidates: tuple[str, ...]  # a=candidate values, as written
    end_of_candidates: bool


@dataclass(frozen=True)
class Choice:
    """A path track in an m-line of the answer."""

    section: int
    track: int
    codec: OfferedCodec


@dataclass(frozen=True)
class Plan:
    offer: Offer
    choices: tuple[Choice, ...]
    left_out: tuple[str, ...] = field(default=())  # path tracks no m-line took, with the reason
    data_section: int | None = None  # the m-line of the control data channel, when accepted

    def choice_for(self, section: int) -> Choice | None:
        return next((c for c in self.choices if c.section == section), None)


def parse_offer(text: str) -> Offer:
    """The parts of a WebRTC offer we use; RtspError(400) with the reason when it is not one."""
    if len(text) > MAX_OFFER_BYTES:
        raise RtspError(400, "the SDP offer is too large")
    try:
        sd = parse_sdp(text)
    except SdpParseError as exc:
        raise RtspError(400, f"malformed SDP offer: {exc}") from None
    if not sd.media:
        raise RtspError(400, "the SDP offer has no m-lines")
    if len(sd.media) > MAX_SECTIONS:
        raise RtspError(400, f"the SDP offer has more than {MAX_SECTIONS} m-lines")
    ufrag = _first(sd, "ice-ufrag")
    pwd = _first(sd, "ice-pwd")
    if not ufrag or not pwd:
        raise RtspError(400, "the SDP offer has no ICE credentials (a=ice-ufrag, a=ice-pwd)")
    fingerprints: list[tuple[str, str]] = []
    for value in [*sd.get_all("fingerprint"), *(v for m in sd.media for v in m.get_all("fingerprint"))]:
        parts = (value or "").split()
        if len(parts) == 2 and (parts[0].lower(), parts[1].upper()) not in fingerprints:
            fingerprints.append((parts[0].lower(), parts[1].upper()))
    if not fingerprints:
        raise RtspError(400, "the SDP offer has no DTLS fingerprint")
    setup = (_first(sd, "setup") or "actpass").lower()
    if setup not in ("actpass", "active", "passive"):
        raise RtspError(400, f"the SDP offer's a=setup:{setup[:20]} is not actpass, active or passive")
    candidates = [v for m in sd.media for v in m.get_all("candidate") if v] + [
        v for v in sd.get_all("candidate") if v
    ]
    end = any(m.has("end-of-candidates") for m in sd.media) or sd.has("end-of-candidates")
    sections = tuple(_section(m, i) for i, m in enumerate(sd.media))
    return Offer(
        sections,
        ufrag,
        pwd,
        sd.has("ice-lite"),
        tuple(fingerprints),
        setup,
        tuple(dict.fromkeys(candidates))[:MAX_CANDIDATES],
        end,
    )


def negotiate(offer: Offer, tracks: Sequence[Sendable], *, data_channel: bool = False) -> Plan:
    """Give each path track the first m-line of its kind that can receive one of its codecs.

    RtspError(415) when no track finds a place: the reason names the path's codecs and the offer's.
    """
    taken: set[int] = set()
    choices: list[Choice] = []
    for position, section in enumerate(offer.sections):
        if section.kind not in ("audio", "video") or section.direction not in ("recvonly", "sendrecv"):
            continue
        for track in tracks:
            if track.index in taken or track.kind != section.kind or track.why_not is not None:
                continue
            codec = pick_codec(track, section.codecs)
            if codec is not None:
                choices.append(Choice(position, track.index, codec))
                taken.add(track.index)
                break
    left_out = tuple(
        f"track {t.index} ({t.codec}): {t.why_not or 'the offer has no m-line that can receive it'}"
        for t in tracks
        if t.index not in taken
    )
    if not choices:
        offered = sorted({f"{c.encoding}/{c.clock_rate}" for s in offer.sections for c in s.codecs})
        raise RtspError(
            415,
            "nothing in this path can be sent to this browser without re-encoding: "
            + "; ".join(left_out)
            + f" (offered: {', '.join(offered) or 'no codecs'})",
        )
    data = None
    if data_channel:
        data = next(
            (i for i, s in enumerate(offer.sections) if s.kind == "application" and s.sctp_port is not None),
            None,
        )
    return Plan(offer, tuple(choices), left_out, data)


def pick_codec(track: Sendable, offered: Sequence[OfferedCodec]) -> OfferedCodec | None:
    """The offered codec that carries ``track`` as it is (H.264: same profile first)."""
    encoding = BROWSER_ENCODINGS.get(track.codec)
    if encoding is None:
        return None
    fits = [c for c in offered if c.encoding == encoding and c.clock_rate == track.clock_rate]
    if encoding == "H264":
        fits = [c for c in fits if c.params.get("packetization-mode", "0") == "1"]
        wanted = (track.profile_level_id or "")[:2].lower()
        same = [c for c in fits if c.params.get("profile-level-id", "42e01f")[:2].lower() == wanted]
        fits = same + [c for c in fits if c not in same]
    if encoding == "VP9":  # profile 0 is what every decoder has; ours is what the file has
        fits.sort(key=lambda c: c.params.get("profile-id", "0") != "0")
    return fits[0] if fits else None


# what a WHIP publisher may send, in order of preference per kind: kept as sent
PUBLISHED = {"video": ("H264", "VP8"), "audio": ("OPUS",)}


def negotiate_publish(offer: Offer) -> Plan:
    """For a WHIP offer: each sending m-line gets the first codec we keep as sent (H.264 with
    packetization-mode 1, VP8, Opus); ``Choice.track`` is the m-line's position. 415 if none."""
    choices: list[Choice] = []
    left_out: list[str] = []
    for position, section in enumerate(offer.sections):
        if section.kind not in ("audio", "video") or section.direction not in ("sendonly", "sendrecv"):
            continue
        wanted = PUBLISHED[section.kind]
        fits = [
            c
            for c in section.codecs
            if c.encoding in wanted and (c.encoding != "H264" or c.params.get("packetization-mode") == "1")
        ]
        fits.sort(key=lambda c: wanted.index(c.encoding))
        if fits:
            choices.append(Choice(position, position, fits[0]))
        else:
            left_out.append(f"m-line {position} ({section.kind}): none of {', '.join(wanted)}")
    if not choices:
        raise RtspError(
            415, "nothing to publish that is kept as sent: " + ("; ".join(left_out) or "no m-lines")
        )
    return Plan(offer, tuple(choices), tuple(left_out))


def answer_sdp(
    plan: Plan,
    *,
    ice_ufrag: str,
    ice_pwd: str,
    fingerprint: tuple[str, str],
    candidates: Sequence[str],
    ssrcs: dict[int, int],
    cname: str,
    session_id: int,
    receive: bool = False,
) -> str:
    """The SDP answer: chosen m-lines sendonly with their SSRC (``receive``: recvonly, for WHIP),
    the others rejected (port 0).

    We take the DTLS server role (``a=setup:passive``) unless the offerer insists on it itself."""
    setup = "active" if plan.offer.setup == "passive" else "passive"
    used = sorted(
        [c.section for c in plan.choices] + ([plan.data_section] if plan.data_section is not None else [])
    )
    bundle = [plan.offer.sections[i].mid for i in used]
    lines = [
        "v=0",
        f"o=- {session_id} 1 IN IP4 0.0.0.0",
        "s=streamd",
        "t=0 0",
        f"a=group:BUNDLE {' '.join(bundle)}",
        "a=msid-semantic: WMS streamd",
    ]
    transport = [
        f"a=ice-ufrag:{ice_ufrag}",
        f"a=ice-pwd:{ice_pwd}",
        f"a=fingerprint:{fingerprint[0]} {fingerprint[1]}",
        f"a=setup:{setup}",
    ]
    for position, section in enumerate(plan.offer.sections):
        choice = plan.choice_for(position)
        if position == plan.data_section:
            lines += [f"m=application 9 {section.proto} webrtc-datachannel", "c=IN IP4 0.0.0.0"]
            lines += [f"a=mid:{section.mid}", *transport, "a=sctp-port:5000", "a=max-message-size:65536"]
            lines += [f"a=candidate:{c}" for c in candidates]
            lines.append("a=end-of-candidates")
            continue
        if choice is None:
            lines += [f"m={section.kind} 0 {section.proto} {' '.join(section.formats[:1]) or '0'}"]
            lines += ["c=IN IP4 0.0.0.0", f"a=mid:{section.mid}", "a=inactive"]
            lines += transport  # aiortc refuses an answer with an m-line without them
            continue
        codec = choice.codec
        pt = codec.payload_type
        lines += [
            f"m={section.kind} 9 {section.proto} {pt}",
            "c=IN IP4 0.0.0.0",
            "a=rtcp:9 IN IP4 0.0.0.0",
            f"a=mid:{section.mid}",
            "a=recvonly" if receive else "a=sendonly",
            "a=rtcp-mux",
            f"a=ice-ufrag:{ice_ufrag}",
            f"a=ice-pwd:{ice_pwd}",
            f"a=fingerprint:{fingerprint[0]} {fingerprint[1]}",
            f"a=setup:{setup}",
        ]
        if not receive:
            lines.append(f"a=msid:streamd {section.kind}{choice.track}")
        channels = f"/{codec.channels}" if codec.channels else ""
        lines.append(f"a=rtpmap:{pt} {_rtpmap_name(codec.encoding)}/{codec.clock_rate}{channels}")
        if codec.fmtp:
            lines.append(f"a=fmtp:{pt} {codec.fmtp}")
        lines += [f"a=rtcp-fb:{pt} {fb}" for fb in FEEDBACK if fb in codec.feedback]
        if not receive:
            lines.append(f"a=ssrc:{ssrcs[choice.track]} cname:{cname}")
            lines.append(f"a=ssrc:{ssrcs[choice.track]} msid:streamd {section.kind}{choice.track}")
        lines += [f"a=candidate:{c}" for c in candidates]
        lines.append("a=end-of-candidates")
    return "\r\n".join(lines) + "\r\n"


def _rtpmap_name(encoding: str) -> str:
    return "opus" if encoding == "OPUS" else encoding


def _first(sd: SessionDescription, name: str) -> str | None:
    """A session-level attribute, else the first m-line's that has it (ICE/DTLS may be either)."""
    value = sd.get(name)
    if value:
        return value
    for media in sd.media:
        value = media.get(name)
        if value:
            return value
    return None


def _section(media: MediaDescription, position: int) -> OfferedSection:
    mid = media.get("mid") or str(position)
    if len(mid) > 64 or not mid.isprintable() or " " in mid:
        raise RtspError(400, f"m-line {position}: unusable a=mid")
    direction = next(
        (d for d in ("sendrecv", "recvonly", "sendonly", "inactive") if media.has(d)), "sendrecv"
    )
    codecs: list[OfferedCodec] = []
    if media.media in ("audio", "video") and media.port != 0:
        for fmt in media.formats[:64]:
            if not fmt.isdigit() or int(fmt) > 127:
                continue
            codec = _codec(media, int(fmt))
            if codec is not None:
                codecs.append(codec)
    sctp_port = None
    if media.media == "application" and "SCTP" in media.proto.upper() and media.port != 0:
        raw = media.get("sctp-port") or (media.formats[0] if media.proto.upper() == "DTLS/SCTP" else "5000")
        sctp_port = int(raw) if raw.isdigit() and 0 < int(raw) < 65536 else None
    return OfferedSection(
        media.media, mid, media.proto, tuple(media.formats), direction, tuple(codecs), sctp_port
    )


def _codec(media: MediaDescription, pt: int) -> OfferedCodec | None:
    rtpmap = media.rtpmap(pt)
    if rtpmap is not None:
        encoding, rate, channels = rtpmap.encoding_name.upper(), rtpmap.clock_rate, rtpmap.channels
    elif pt in STATIC_TYPES:
        encoding, rate = STATIC_TYPES[pt]
        channels = None
    else:
        return None
    raw = ""
    for value in media.get_all("fmtp"):
        if value and value.split(None, 1)[0] == str(pt):
            raw = value.split(None, 1)[1].strip() if " " in value.strip() else ""
            break
    try:
        params = {k.lower(): v for k, v in media.fmtp(pt).items()}
    except ValueError:
        params = {}
    feedback = tuple(
        v.split(None, 1)[1].strip().lower()
        for v in media.get_all("rtcp-fb")
        if v and " " in v and v.split(None, 1)[0] in (str(pt), "*")
    )
    return OfferedCodec(pt, encoding, rate, channels, raw, params, feedback)
