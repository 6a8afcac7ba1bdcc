"""Every fuzz target by name: ``TARGETS[name](data)`` feeds bytes to one parser of network input
and asserts only its documented contract (a value, or its documented error); anything else
raised is a bug. The name is also the corpus directory: ``tests/fuzz/corpus/<name>/``."""

from __future__ import annotations

from collections.abc import Callable

from . import hls, media, rtp, rtsp, srtp, text

Target = Callable[[bytes], None]

TARGETS: dict[str, Target] = {
    # RTSP messages and headers (streamd/rtsp/)
    "rtsp_parser": rtsp.fuzz_rtsp_parser,
    "rtsp_client": rtsp.fuzz_rtsp_client,
    "transport": rtsp.fuzz_transport,
    "range": rtsp.fuzz_range,
    "session": rtsp.fuzz_session,
    "rtp_info": rtsp.fuzz_rtp_info,
    "rate": rtsp.fuzz_rate,
    "parameters": rtsp.fuzz_parameters,
    "request_uri": rtsp.fuzz_request_uri,
    "www_authenticate": rtsp.fuzz_www_authenticate,
    # SDP, announces, tunnels, config
    "sdp": text.fuzz_sdp,
    "announce": text.fuzz_announce,
    "tunnel_base64": text.fuzz_tunnel_base64,
    "config": text.fuzz_config,
    # live HLS requests (streamd/hls/live_directives.py, live_routes.py)
    "hls_directives": hls.fuzz_hls_directives,
    # RTCP and RTP payload formats (streamd/rtp/)
    "rtcp": rtp.fuzz_rtcp,
    "rtp_h264": rtp.fuzz_rtp_h264,
    "rtp_h265": rtp.fuzz_rtp_h265,
    "rtp_aac": rtp.fuzz_rtp_aac,
    "rtp_latm": rtp.fuzz_rtp_latm,
    "rtp_opus": rtp.fuzz_rtp_opus,
    "rtp_av1": rtp.fuzz_rtp_av1,
    "rtp_vp8": rtp.fuzz_rtp_vp8,
    "rtp_vp9": rtp.fuzz_rtp_vp9,
    "rtp_mjpeg": rtp.fuzz_rtp_mjpeg,
    "rtp_mpeg_video": rtp.fuzz_rtp_mpeg_video,
    "rtp_mpeg_audio": rtp.fuzz_rtp_mpeg_audio,
    "rtp_ac3": rtp.fuzz_rtp_ac3,
    "rtp_mp2t": rtp.fuzz_rtp_mp2t,
    "rtp_pcm": rtp.fuzz_rtp_pcm,
    # bitstream helpers in media/
    "latm_config": media.fuzz_latm_config,
    "latm_element": media.fuzz_latm_element,
    "aac_config": media.fuzz_aac_config,
    "adts": media.fuzz_adts,
    "h264_nals": media.fuzz_h264_nals,
    "h265_nals": media.fuzz_h265_nals,
    # SRTP key exchange (streamd/srtp/): MIKEY, the KeyMgmt header, SDES a=crypto
    "mikey": srtp.fuzz_mikey,
    "key_mgmt": srtp.fuzz_key_mgmt,
    "crypto": srtp.fuzz_crypto,
}

# AUTHORIZATION: the header parser of issue 14 (streamd/auth/credentials.py) comes with another
# branch; its target joins as soon as that module exists (seeds: tests/fuzz/corpus/authorization/).
if rtsp._credentials is not None:
    TARGETS["authorization"] = rtsp.fuzz_authorization
