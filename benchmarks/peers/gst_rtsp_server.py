"""Serve one MP4 (H.264 + AAC) with GStreamer's gst-rtsp-server, payloaders in passthrough.

Run by Debian's Python (``/usr/bin/python3``, which has PyGObject and the GstRtspServer typelib),
not the project's virtualenv. Each client gets its own pipeline (not shared), as with streamd,
so both servers do the same work per session: demux, parse, packetize, pace, send.

    /usr/bin/python3 benchmarks/peers/gst_rtsp_server.py --port 8554 --file clip.mp4
"""

import argparse
import signal

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8554)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--file", required=True)
    parser.add_argument("--mount", default="/clip")
    parser.add_argument("--tls-cert", help="PEM certificate: serve RTSPS (TLS) on --port instead")
    parser.add_argument("--tls-key", help="PEM key of --tls-cert")
    args = parser.parse_args()
    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address(args.host)
    server.set_service(str(args.port))
    factory = GstRtspServer.RTSPMediaFactory()
    location = args.file.replace("\\", "\\\\").replace('"', '\\"')
    factory.set_launch(
        f'( filesrc location="{location}" ! qtdemux name=d '
        "d.video_0 ! queue ! h264parse ! rtph264pay name=pay0 pt=96 config-interval=-1 "
        "d.audio_0 ! queue ! aacparse ! rtpmp4gpay name=pay1 pt=97 )"
    )
    factory.set_shared(False)
    if args.tls_cert:
        _serve_tls(server, factory, args.tls_cert, args.tls_key)
    server.get_mount_points().add_factory(args.mount, factory)
    server.attach(None)
    loop = GLib.MainLoop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, sig, loop.quit)
    print(f"gst-rtsp-server ready: rtsp://{args.host}:{args.port}{args.mount}", flush=True)
    loop.run()


def _serve_tls(
    server: "GstRtspServer.RTSPServer", factory: "GstRtspServer.RTSPMediaFactory", cert: str, key: str
) -> None:
    """RTSPS the gst-rtsp-server way: an RTSPAuth carrying the TLS certificate, whose default
    token lets anonymous clients reach and build the media (no users, like the plain peer)."""
    from gi.repository import Gio

    auth = GstRtspServer.RTSPAuth()
    auth.set_tls_certificate(Gio.TlsCertificate.new_from_files(cert, key))
    token = GstRtspServer.RTSPToken()
    token.set_string(GstRtspServer.RTSP_TOKEN_MEDIA_FACTORY_ROLE, "anonymous")
    auth.set_default_token(token)
    factory.add_role_from_structure(
        Gst.Structure.new_from_string(
            "anonymous, media.factory.access=(boolean)true, media.factory.construct=(boolean)true"
        )
    )
    server.set_auth(auth)


if __name__ == "__main__":
    main()
