"""The ``streamd`` command: serve, probe a file, print a file's SDP."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import logging
import signal
import sys
from pathlib import Path

from streamd.auth.external import check_external
from streamd.config import ConfigError, ServerConfig, load_config
from streamd.limits import raise_open_files_limit
from streamd.logs import configure_logging
from streamd.version import __version__
from streamd.workers.worker import Identity

log = logging.getLogger("streamd")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="streamd", description="RTSP streaming media server.")
    parser.add_argument("--version", action="version", version=f"streamd {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="serve the media folder and the built-in test stream over RTSP")
    serve.add_argument("--media", type=Path, help="folder whose files are served (default: ./media)")
    serve.add_argument("--host", help="address to listen on (default: 0.0.0.0)")
    serve.add_argument("--rtsp-port", type=int, help="RTSP port (default: 8554)")
    serve.add_argument("--http-port", type=int, help="HTTP port (default: 8080)")
    serve.add_argument("--rtp-port", type=int, help="UDP port for RTP, RTCP on the next one (default: 8000)")
    serve.add_argument("--session-timeout", type=int, help="seconds of client silence before a session ends")
    serve.add_argument("--max-payload-size", type=int, help="largest RTP payload in bytes (default: 1400)")
    serve.add_argument(
        "--no-udp", dest="udp", action="store_const", const=False, help="offer RTP over TCP only"
    )
    serve.add_argument("--no-test-stream", dest="test_stream", action="store_const", const=False)
    serve.add_argument("--no-http", dest="http", action="store_false", help="do not serve the HTTP side")
    serve.add_argument("--cache-dir", type=Path, help="where the built-in test stream is kept")
    serve.add_argument(
        "--multicast-range", help='multicast groups for live paths, e.g. 239.255.42.0/24 ("" disables)'
    )
    serve.add_argument(
        "--multicast-ports", type=_port_range, help="multicast RTP ports FIRST-LAST (default: 40000-40999)"
    )
    serve.add_argument("--multicast-ttl", type=int, help="multicast TTL (default: 16)")
    serve.add_argument("--multicast-interface", help="IPv4 address whose interface sends multicast")
    serve.add_argument("--record-dir", type=Path, help="where recordings go (default: <media>/recordings)")
    serve.add_argument("--record-format", choices=["mp4", "mkv"], help="recording container (default: mp4)")
    serve.add_argument("--record-segment", type=float, help="seconds per recorded file (default: 60)")
    serve.add_argument(
        "--send-slack", type=float, help="seconds: what is due this soon is sent at once (0.002)"
    )
    serve.add_argument(
        "--precise-pacing",
        action="store_const",
        const=True,
        help="send nothing early: each access unit at its own time (no pacer slack; more CPU)",
    )
    serve.add_argument(
        "--precise-pacing-rate",
        type=float,
        help="bit/s of the slow link: precise pacing spreads an access unit's packets at this rate (0: no)",
    )
    serve.add_argument("--rtsps-port", type=int, help="RTSPS port, with --tls-cert/--tls-key (default: 8322)")
    serve.add_argument("--https-port", type=int, help="HTTPS port, with --tls-cert/--tls-key (default: 8443)")
    serve.add_argument("--tls-cert", type=Path, help="PEM certificate (chain): turns on RTSPS and HTTPS")
    serve.add_argument("--tls-key", type=Path, help="PEM private key of --tls-cert")
    serve.add_argument(
        "--rtsp-listen",
        choices=["on", "loopback", "off"],
        help="plain RTSP: on, loopback (127.0.0.1 only) or off (RTSPS only) (default: on)",
    )
    serve.add_argument(
        "--workers",
        help='server processes sharing the ports: a number, or "auto" (one per core); default 1',
    )
    serve.add_argument("--cluster", help="join a cluster: redis://host:6379/0 (docs/scaling.md)")
    serve.add_argument("--node-address", help="rtsp://host:port other nodes and clients reach this one at")
    serve.add_argument("--config", type=Path, help="TOML configuration file (keys mirror these flags)")
    serve.add_argument("--log-level", choices=["debug", "info", "warning", "error"])

    probe = commands.add_parser("probe", help="show a file's tracks and what will be streamed")
    sdp = commands.add_parser("sdp", help="print the SDP that DESCRIBE returns for a file")
    for inspect in (probe, sdp):
        inspect.add_argument("file", type=Path)
        inspect.add_argument("--config", type=Path, help="apply this config file's path settings")
        inspect.add_argument("--media", type=Path, help="the media folder (default: the config's)")
    sdp.add_argument("--address", default="127.0.0.1", help="server address for the o= line")

    api_help = "the server's HTTP address (default: http://127.0.0.1:8080)"
    drain = commands.add_parser(
        "drain", help="drain a running server for maintenance: send its clients to other servers"
    )
    drain.add_argument(
        "--to", nargs="*", default=[], metavar="URL", help="rtsp:// base URLs of other servers"
    )
    drain.add_argument("--grace", type=float, default=30.0, help="seconds before remaining sessions end")
    drain.add_argument("--wait", action="store_true", help="return when no session is left")
    drain.add_argument("--cancel", action="store_true", help="stop draining: accept sessions again")
    drain.add_argument("--api", default=None, help=api_help)

    move = commands.add_parser("move", help="serve a path from other servers (302 and REDIRECT)")
    move.add_argument("path")
    move.add_argument(
        "--to", nargs="*", default=[], metavar="URL", help="rtsp:// URLs; none: serve here again"
    )
    move.add_argument("--api", default=None, help=api_help)

    passwd = commands.add_parser(
        "passwd",
        help="read a password from stdin, print what the config's [[users]] password holds",
        description="Prints one string (Digest HA1 for MD5 and SHA-256 in the realm, and an scrypt "
        'hash for Basic) for `password = "..."` in [[users]]; the password itself is never stored.',
    )
    passwd.add_argument("user", help="the user's name (Digest hashes include it)")
    passwd.add_argument("--realm", default=ServerConfig.realm, help="the server's realm (default: streamd)")

    bench = commands.add_parser(
        "bench", help="run a benchmark from a source checkout (see benchmarks/README.md)"
    )
    bench.add_argument("benchmark", choices=["jitter", "load"])
    bench.add_argument("options", nargs=argparse.REMAINDER, help="passed on to the benchmark")
    return parser


def _passwd(user: str, realm: str) -> int:
    from streamd.auth.secrets import SecretError, make_secret

    if sys.stdin.isatty():
        import getpass

        password = getpass.getpass("password: ")
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    if not password:
        print("streamd: empty password", file=sys.stderr)
        return 1
    try:
        print(make_secret(user, password, realm))
    except SecretError as exc:
        print(f"streamd: {exc}", file=sys.stderr)
        return 1
    return 0


def _port_range(text: str) -> tuple[int, int]:
    low, _, high = text.partition("-")
    try:
        return int(low), int(high)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not FIRST-LAST, e.g. 40000-40999") from None


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "serve":
        return _serve(args, argv)
    if args.command == "bench":
        return _bench(args.benchmark, args.options)
    if args.command in ("drain", "move"):
        return _admin(args)
    if args.command == "passwd":
        return _passwd(args.user, args.realm)
    configure_logging("warning")
    from streamd.probe_report import describe_file, print_probe

    try:
        config = load_config(args.config, {"media": args.media})
        path = _served_path(args.file, config.media)
        settings = config.path_settings(path)
        if args.command == "probe":
            print(print_probe(args.file, settings, path))
        else:
            print(describe_file(args.file, args.address, settings), end="")
    except Exception as exc:  # a bad file is a message, not a traceback
        print(f"streamd: {exc}", file=sys.stderr)
        return 1
    return 0


def _served_path(file: Path, media: Path) -> str:
    """The path a file is served at: relative to the media folder when inside it, else its name."""
    try:
        return file.resolve().relative_to(media.resolve()).as_posix()
    except ValueError:
        return file.name


def _admin(args: argparse.Namespace) -> int:
    from streamd import admin_client

    api = args.api or admin_client.DEFAULT_API
    try:
        if args.command == "move":
            return admin_client.move(api, args.path, args.to)
        if args.cancel:
            return admin_client.stop_draining(api)
        return admin_client.drain(api, args.to, args.grace, wait=args.wait)
    except admin_client.AdminError as exc:
        print(f"streamd: {exc}", file=sys.stderr)
        return 1


def _bench(name: str, options: list[str]) -> int:
    """The benchmarks live beside the package in a checkout, not in the installed wheel."""
    checkout = Path(__file__).resolve().parents[1]
    if (checkout / "benchmarks" / "__init__.py").exists() and str(checkout) not in sys.path:
        sys.path.insert(0, str(checkout))
    try:
        if name == "jitter":
            from benchmarks.jitter_loss import main as run
        else:
            from benchmarks.load import main as run
    except ImportError:
        print(
            "streamd: the benchmarks ship with the source checkout; run this from its top folder",
            file=sys.stderr,
        )
        return 2
    return run(options)


def _serve(args: argparse.Namespace, argv: list[str] | None = None) -> int:
    overrides = {
        key: getattr(args, key)
        for key in (
            "media",
            "host",
            "rtsp_port",
            "http_port",
            "rtp_port",
            "session_timeout",
            "max_payload_size",
            "udp",
            "test_stream",
            "log_level",
            "cache_dir",
            "multicast_range",
            "multicast_ports",
            "multicast_ttl",
            "multicast_interface",
            "record_dir",
            "record_format",
            "record_segment",
            "send_slack",
            "precise_pacing",
            "precise_pacing_rate",
            "rtsps_port",
            "https_port",
            "tls_cert",
            "tls_key",
            "rtsp_listen",
            "workers",
            "cluster",
            "node_address",
        )
    }
    try:
        config = load_config(args.config, overrides)
        check_external(config)  # auth hook and JWT settings (streamd.auth.external)
    except ConfigError as exc:
        print(f"streamd: {exc}", file=sys.stderr)
        return 2
    configure_logging(config.log_level)
    raise_open_files_limit()
    worker = Identity.from_env()
    if worker is None and int(config.workers) > 1:  # the parent of the workers: serves nobody itself
        from streamd.workers.supervisor import Supervisor

        return asyncio.run(Supervisor(int(config.workers), argv or sys.argv[1:], config=config).run())
    with contextlib.suppress(ImportError):
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    try:
        asyncio.run(_run_server(config, http=args.http, worker=worker))
    except OSError as exc:
        log.error("cannot start: %s", exc)
        return 1
    except KeyboardInterrupt:
        pass
    return 0


async def _run_server(config: ServerConfig, *, http: bool = True, worker: Identity | None = None) -> None:
    from streamd.embed import Server

    runtime = None
    if worker is not None:  # one of `--workers N` (streamd.workers)
        from streamd.workers.worker import WorkerRuntime, tag_logs

        config = worker.config(config)
        runtime = WorkerRuntime(worker)
        tag_logs(worker.index)
    server = Server(config, http=http, extension=runtime)
    await server.start()
    assert server.rtsp is not None
    if runtime is not None:
        await runtime.ready()
    # what is alive now (modules, classes, configuration) lives as long as the server: keep it out
    # of the cyclic collector's full passes, which otherwise stall every session's pacing for
    # tens of milliseconds (they scanned ~60,000 start-up objects each time)
    gc.collect()
    gc.freeze()
    shown = "127.0.0.1" if config.host in ("0.0.0.0", "::", "") else config.host
    if config.test_stream:
        log.info("streamd %s ready: rtsp://%s:%d/test", __version__, shown, server.rtsp_port)
    if server.media_dir is not None:
        log.info(
            "serving files under %s as rtsp://%s:%d/<relative path>",
            server.media_dir.resolve(),
            shown,
            server.rtsp_port,
        )
    if server.rtsps_port is not None:
        log.info("RTSPS (TLS): rtsps://%s:%d/<path>", shown, server.rtsps_port)
    if server.http_port is not None:
        log.info("web page: http://%s:%d/", shown, server.http_port)
    if server.https_port is not None:
        log.info("web page over HTTPS: https://%s:%d/", shown, server.https_port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("stopping: ending %d session(s)", len(server.rtsp.sessions))
    await server.stop()
    log.info("stopped")


if __name__ == "__main__":
    sys.exit(main())
