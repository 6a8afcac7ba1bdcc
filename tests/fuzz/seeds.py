"""Writes the seed corpora: ``python -m tests.fuzz.seeds`` (needs ffmpeg for the RTP seeds).

Seeds are real messages (what ffmpeg, GStreamer and cameras send; RTP packets our own packetizers
make of files ffmpeg encodes) plus a few edge cases. Regenerating rewrites ``corpus/`` only; the
result is committed, so the test suite needs no encoder.
"""

from __future__ import annotations

import base64
import struct
import subprocess
import tempfile
from pathlib import Path

from aiortc.rtp import RtcpByePacket, RtcpReceiverInfo, RtcpRrPacket

from media.probe import probe
from media.reader import MediaReader
from streamd.rtp.payload.registry import payload_format_for
from streamd.rtp.rtcp import goodbye, receiver_report, sender_report

from .corpus import CORPUS
from .targets.common import frame
from .targets.rtp import LIVE_SDP

HEAD = "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=No Name\r\nt=0 0\r\n"
URL = "rtsp://127.0.0.1:8554/test"
FFMPEG_SDP = (
    "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=No Name\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    "a=tool:libavformat 60.16.100\r\n"
    "m=video 0 RTP/AVP 96\r\nb=AS:200\r\na=rtpmap:96 H264/90000\r\n"
    "a=fmtp:96 packetization-mode=1; sprop-parameter-sets=Z0LAHtkDxWhAAAADAEAAAAwDxYuS,aMuMsg==; "
    "profile-level-id=42C01E\r\na=control:streamid=0\r\n"
    "m=audio 0 RTP/AVP 97\r\nb=AS:128\r\na=rtpmap:97 MPEG4-GENERIC/44100/2\r\n"
    "a=fmtp:97 profile-level-id=1;mode=AAC-hbr;sizelength=13;indexlength=3;indexdeltalength=3; "
    "config=121056E500\r\na=control:streamid=1\r\n"
)
GST_SDP = (
    "v=0\r\no=- 1188340656180883 1 IN IP4 127.0.0.1\r\ns=Session streamed with GStreamer\r\n"
    "i=rtsp-server\r\nt=0 0\r\na=tool:GStreamer\r\na=type:broadcast\r\n"
    "m=video 0 RTP/AVP 96\r\nc=IN IP4 0.0.0.0\r\na=rtpmap:96 H265/90000\r\n"
    + "a=fmtp:96 "
    + LIVE_SDP["h265"].split("a=fmtp:96 ")[1]
    + "a=control:stream=0\r\nm=audio 0 RTP/AVP 97\r\nc=IN IP4 0.0.0.0\r\n"
    "a=rtpmap:97 MP4A-LATM/48000/2\r\na=fmtp:97 cpresent=0;config=400023203fc0\r\na=control:stream=1\r\n"
)
CAMERA_SDP = (
    HEAD + "a=range:npt=0-\r\nm=audio 0 RTP/AVP 0\r\na=control:trackID=1\r\nm=application 0 RTP/AVP 107\r\n"
)


def request(method: str, uri: str, cseq: int, *headers: str, body: bytes = b"") -> bytes:
    lines = [f"{method} {uri} RTSP/1.0", f"CSeq: {cseq}", *headers]
    if body:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def response(status: int, cseq: int, *headers: str, body: bytes = b"") -> bytes:
    lines = [f"RTSP/1.0 {status} OK", f"CSeq: {cseq}", *headers]
    if body:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def interleaved(channel: int, data: bytes) -> bytes:
    return b"$" + bytes([channel]) + struct.pack("!H", len(data)) + data


UA_FF = "User-Agent: Lavf60.16.100"
UA_GST = "User-Agent: GStreamer/1.22.0"
RTCP_SR = sender_report(0x1234, 0xE000000000000000, 1000, 10, 1000, "streamd")
RTCP_RR = receiver_report(0x99, [RtcpReceiverInfo(0x1234, 0, 0, 100, 5, 0xE0000000, 655)], "ffmpeg")


def rtsp_seeds() -> dict[str, list[bytes]]:
    ffmpeg_play = [
        request("OPTIONS", URL, 1, UA_FF),
        request("DESCRIBE", URL, 2, "Accept: application/sdp", UA_FF),
        request(
            "SETUP", URL + "/trackID=0", 3, "Transport: RTP/AVP/UDP;unicast;client_port=5000-5001", UA_FF
        ),
        request("PLAY", URL, 4, "Range: npt=0.000-", "Session: 7bd3a1e2c4f5a6b7", UA_FF),
        request("GET_PARAMETER", URL, 5, "Session: 7bd3a1e2c4f5a6b7", UA_FF),
        request("TEARDOWN", URL, 6, "Session: 7bd3a1e2c4f5a6b7", UA_FF),
    ]
    gst_tcp = [
        request("SETUP", URL + "/trackID=1", 3, "Transport: RTP/AVP/TCP;unicast;interleaved=0-1", UA_GST),
        request("PLAY", URL, 4, "Range: npt=0-", "Session: abcdefgh;timeout=60", "Scale: 1.000", UA_GST),
        interleaved(1, RTCP_RR),
        request(
            "SET_PARAMETER", URL, 5, "Session: abcdefgh", "Content-Type: text/parameters", body=b"a: b\r\n"
        ),
    ]
    publish = [
        request(
            "ANNOUNCE",
            "rtsp://127.0.0.1:8554/live/cam",
            2,
            "Content-Type: application/sdp",
            UA_FF,
            body=FFMPEG_SDP.encode(),
        ),
        request(
            "SETUP",
            "rtsp://127.0.0.1:8554/live/cam/streamid=0",
            3,
            "Transport: RTP/AVP/TCP;unicast;interleaved=0-1;mode=record",
            UA_FF,
        ),
        request("RECORD", "rtsp://127.0.0.1:8554/live/cam", 4, "Range: npt=0.000-", "Session: s1", UA_FF),
        interleaved(0, bytes.fromhex("8060000100000000deadbeef") + b"\x65\x88\x84"),
        interleaved(1, RTCP_SR),
    ]
    tunnel = [
        b"GET /test HTTP/1.0\r\nx-sessioncookie: 1a2b3c\r\nAccept: application/x-rtsp-tunnelled\r\n\r\n",
        b"POST /test HTTP/1.0\r\nx-sessioncookie: 1a2b3c\r\nContent-Type: application/x-rtsp-tunnelled\r\n"
        b"Content-Length: 32767\r\n\r\n" + base64.b64encode(ffmpeg_play[0]),
    ]
    edge = [
        b"OPTIONS * RTSP/1.0\r\nCSeq: 1\r\nX-Folded: a\r\n b\r\n\r\n\r\n",
        b"OPTIONS * RTSP/2.0\r\nCSeq: 1\r\nContent-Length: 0\r\nContent-Length: 0\r\n\r\n",
        b"DESCRIBE rtsp://h/x RTSP/1.0\nCSeq: 9\n\n",
        b"OPTIONS * RTSP/1.0\r\nCSeq: 1\r\nContent-Length: 5\r\n\r\nabcde",
        b"$\x00\x00\x00$\x01\x00\x04abcd",
    ]
    parser = [b"\x00" + b"".join(ffmpeg_play), b"\x03" + b"".join(gst_tcp), b"\x05" + b"".join(publish)]
    parser += [b"\x01" + t for t in tunnel] + [bytes([i]) + e for i, e in enumerate(edge)]
    sdp_body = FFMPEG_SDP.encode()
    client = [
        response(200, 1, "Public: OPTIONS, DESCRIBE, SETUP, PLAY, PAUSE, TEARDOWN, GET_PARAMETER"),
        response(
            401,
            2,
            'WWW-Authenticate: Digest realm="cam", nonce="abc123", qop="auth"',
            'WWW-Authenticate: Basic realm="cam"',
        ),
        response(200, 2, "Content-Type: application/sdp", f"Content-Base: {URL}/", body=sdp_body),
        response(
            200,
            3,
            "Session: 12345678;timeout=30",
            "Transport: RTP/AVP/TCP;unicast;interleaved=0-1;ssrc=1234ABCD",
        ),
        response(
            200, 4, "Session: 12345678", f"RTP-Info: url={URL}/trackID=0;seq=1;rtptime=0", "Range: npt=0-"
        ),
        request("OPTIONS", "*", 1),
        interleaved(0, bytes.fromhex("8060000100000000deadbeef") + b"\x65\x88\x84"),
    ]
    return {
        "rtsp_parser": parser,
        "rtsp_client": [b"\x00" + b"".join(client), b"\x02" + client[1], b"\x06" + b"".join(client[2:5])],
        "transport": [
            b"RTP/AVP/UDP;unicast;client_port=5000-5001",
            b"RTP/AVP/TCP;unicast;interleaved=0-1",
            b'RTP/AVP;unicast;client_port=49152-49153;mode="PLAY"',
            b"RTP/AVP;unicast;client_port=49152-49153,RTP/AVP/TCP;unicast;interleaved=0-1",
            b"RTP/AVP;multicast;destination=224.1.2.3;ttl=16;port=5000-5001",
            b"RTP/AVP/UDP;unicast;client_port=5002-5003;mode=record",
            b'RTP/AVP;unicast;client_port=6970;ssrc= 1a2b3c;mode="receive";source="10.0.0.1";x-rate=1',
            b"RTP/AVP/TCP;interleaved=254-255;append;;",
        ],
        "range": [
            b"npt=0-",
            b"npt=0.000-",
            b"npt=10-20.5",
            b"npt=now-",
            b"npt=00:01:02.5-01:00:00",
            b"npt=-5",
            b"clock=19961108T142300Z-",
            b"smpte=10:07:00-",
            b"npt=3.2-;time=20231010T000000Z",
        ],
        "session": [b"7bd3a1e2c4f5a6b7", b"abcdefgh;timeout=60", b"$-_.+09AZaz;Timeout = 5 ; x=y", b""],
        "rtp_info": [
            f"url={URL}/trackID=0;seq=1;rtptime=2,url={URL}/trackID=1;seq=65535;rtptime=4294967295".encode(),
            b'url="rtsp://cam/a;b,c";seq=5;ssrc=1234',
        ],
        "rate": [b"1", b"-1.0", b"0.5", b"2.000", b" +.5 "],
        "parameters": [b"packets_received\r\njitter\r\n", b"position: 10\r\nscale: 2\r\n", b"\r\n"],
        "request_uri": [
            URL.encode(),
            b"/test/trackID=1",
            b"*",
            b"rtsp://h:1/a%20b.mp4/",
            b"http://x/y?z#w",
            b"rtsp://[::1]:554/live/cam/streamid=0",
        ],
        "www_authenticate": [
            b'Digest realm="cam", nonce="abc", algorithm=MD5, qop="auth,auth-int", opaque="x\\"y"',
            b'Digest realm="streamd", nonce="n1", algorithm=SHA-256, stale=true\nBasic realm="streamd"',
        ],
        "authorization": [
            b'Digest username="viewer", realm="streamd", nonce="0123456789abcdef", uri="rtsp://h/cams/door", '
            b'response="6629fae49393a05397450978507c4ef1", algorithm=MD5',
            b'Digest username="viewer", realm="streamd", nonce="abc", uri="rtsp://h/x", algorithm=SHA-256, '
            b'qop=auth, nc=00000001, cnonce="0a4f113b", response="deadbeef"',
            b"Basic dmlld2VyOnNlY3JldA==",
            b"Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ2aWV3ZXIifQ.c2ln",
        ],
    }


def text_seeds() -> dict[str, list[bytes]]:
    sdps = [FFMPEG_SDP, GST_SDP, CAMERA_SDP] + [HEAD + s for s in LIVE_SDP.values()]
    b64 = base64.b64encode(request("OPTIONS", URL, 1))
    return {
        "sdp": [s.encode() for s in sdps] + [b"v=0\nc=IN IP6 ::1\nb=AS:10\nm=video 5000/2 RTP/AVP 96 97\n"],
        "announce": [s.encode() for s in sdps],
        "tunnel_base64": [
            b"\x00" + b64,
            b"\x03" + b64[:20] + b"\r\n" + b64[20:],
            b"\x02" + base64.b64encode(b"ab") + base64.b64encode(b"cde"),
        ],
        "config": [
            b'rtsp_port = 8554\nmedia = "/srv/media"\nsession_timeout = 60\n',
            b'[paths."live/cam"]\nsource = "rtsp://user:pass@10.0.0.2/stream"\nsource_transport = "tcp"\n',
            b'max_connections = 100\nadmin_networks = ["127.0.0.0/8"]\n[paths.movies]\nmode = "mpegts"\n',
        ],
    }


def rtcp_seeds() -> list[bytes]:
    live555 = bytes(RtcpRrPacket(ssrc=7, reports=[RtcpReceiverInfo(0x1234, 255, 0xFFFFFF, 100, 5, 0, 0)]))
    return [
        RTCP_SR,
        RTCP_RR,
        goodbye(0x1234, 0xE000000000000000, 1000, 10, 1000, "x"),
        live555 + bytes.fromhex("81ca0003000000070105616263"),  # SDES chunk without its END item
        RTCP_RR + bytes(RtcpByePacket(sources=[1, 2])) + bytes.fromhex("80cc0002000000016e616d65"),  # + APP
    ]


# (target, ffmpeg arguments, file suffix): files whose access units our packetizers send.
ENCODES = (
    ("rtp_h264", ("-c:v", "libx264", "-bf", "0", "-g", "5", "-an"), "mp4"),
    ("rtp_h265", ("-c:v", "libx265", "-x265-params", "log-level=error:keyint=5", "-an"), "mp4"),
    ("rtp_vp8", ("-c:v", "libvpx", "-an"), "webm"),
    ("rtp_vp9", ("-c:v", "libvpx-vp9", "-an"), "webm"),
    ("rtp_av1", ("-c:v", "libsvtav1", "-an"), "mkv"),
    ("rtp_mjpeg", ("-c:v", "mjpeg", "-huffman", "default", "-pix_fmt", "yuvj420p", "-an"), "mkv"),
    ("rtp_mpeg_video", ("-c:v", "mpeg2video", "-an"), "ts"),
    ("rtp_aac", ("-vn", "-c:a", "aac"), "mp4"),
    ("rtp_opus", ("-vn", "-c:a", "libopus"), "ogg"),
    ("rtp_mpeg_audio", ("-vn", "-c:a", "mp2"), "mka"),
    ("rtp_ac3", ("-vn", "-c:a", "ac3"), "mka"),
    ("rtp_pcm", ("-vn", "-c:a", "pcm_s16be", "-ac", "2"), "mka"),
)


def rtp_packets(path: Path, max_payload: int) -> list[bytes]:
    """Every access unit of the file's first track as RTP packets (sequence from 1, PT 96)."""
    info = probe(path)
    track = info.tracks[0]
    fmt = payload_format_for(track, 96, max_payload)
    packets = []
    seq = 1
    with MediaReader(path, info, [track.index]) as reader:
        while (au := reader.read()) is not None and len(packets) < 60:
            ts = int(au.pts * fmt.clock_rate * track.time_base) & 0xFFFFFFFF
            for payload, marker, offset in fmt.packetize_timed(au):
                header = struct.pack("!BBHII", 0x80, (0x80 if marker else 0) | 96, seq, ts + offset, 0xC0FFEE)
                packets.append(header + payload)
                seq += 1
    return packets


def rtp_seeds(tmp: Path) -> dict[str, list[bytes]]:
    seeds: dict[str, list[bytes]] = {}
    for target, args, suffix in ENCODES:
        path = tmp / f"{target}.{suffix}"
        video = args[0] != "-vn"
        source = (
            ["-f", "lavfi", "-i", "testsrc2=d=1:s=96x64:r=10"]
            if video
            else ["-f", "lavfi", "-i", "sine=d=0.3"]
        )
        subprocess.run(
            ["ffmpeg", "-nostdin", "-loglevel", "error", *source, *args, "-y", str(path)],
            check=True,
            timeout=120,
            capture_output=True,
        )
        packets = rtp_packets(path, 300)  # small packets: fragmentation in a few hundred bytes
        # a few inputs of at most ~6 kB each: the start (with a keyframe) and a later stretch
        seeds[target] = [frame(packets[:12])[:6000], frame(packets[-8:])[:6000], frame(packets[:1])]
    seeds["rtp_latm"] = [
        frame([struct.pack("!BBHII", 0x80, 0xE1, 1, 0, 1) + bytes([7]) + b"\x21\x10\x05\x00\xa0\x1c\x00"]),
        frame([struct.pack("!BBHII", 0x80, 0x61, n, 0, 1) + b"\xff\xff" for n in range(3)]),
    ]
    seeds["rtp_mp2t"] = [
        frame([struct.pack("!BBHII", 0x80, 0xA1, 1, 0, 1) + (b"\x47\x1f\xff\x10" + bytes(184)) * 2])
    ]
    return seeds


def media_seeds(rtp: dict[str, list[bytes]]) -> dict[str, list[bytes]]:
    h264_sets = base64.b64decode("Z0LAHtkDxWhAAAADAEAAAAwDxYuS"), base64.b64decode("aMuMsg==")
    annexb = b"".join(b"\x00\x00\x00\x01" + n for n in h264_sets) + b"\x00\x00\x01\x65\x88\x84\x00"
    return {
        "latm_config": [
            bytes.fromhex("400023203fc0"),
            bytes.fromhex("40002420"),
            bytes.fromhex("8000002320"),
        ],
        "latm_element": [b"\x00\x07\x21\x10\x05\x00\xa0\x1c\x00", b"\x01\xff\x01" + bytes(256) + b"\x00"],
        "aac_config": [
            bytes.fromhex(h) for h in ("1190", "1210", "121056e500", "2b920800", "f8ee2000", "0190")
        ],
        "adts": [bytes.fromhex("fff15080021ffc") + b"\x21", bytes.fromhex("fff15080033ffc0000") + bytes(17)],
        "h264_nals": [annexb, b"\x01\x42\xc0\x1e\xff\xe1\x00\x04" + h264_sets[0][:4] + b"\x01\x00\x01\x68"],
        "h265_nals": [
            b"".join(
                b"\x00\x00\x00\x01" + bytes.fromhex(v)
                for v in ("40010c01ffff016000000300900000030000030078959809", "4401c172b46240", "2601af")
            )
        ],
    }


def main() -> None:
    seeds: dict[str, list[bytes]] = {}
    seeds.update(rtsp_seeds())
    seeds.update(text_seeds())
    seeds["rtcp"] = rtcp_seeds()
    with tempfile.TemporaryDirectory() as tmp:
        rtp = rtp_seeds(Path(tmp))
    seeds.update(rtp)
    seeds.update(media_seeds(rtp))
    for target, items in sorted(seeds.items()):
        folder = CORPUS / target
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.iterdir():
            old.unlink()
        for n, data in enumerate(items):
            (folder / f"seed-{n:02d}").write_bytes(data)
        print(f"{target}: {len(items)} seeds")


if __name__ == "__main__":
    main()
