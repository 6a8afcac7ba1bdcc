"""Server configuration: defaults that work, a TOML file whose keys mirror the flags, then flags.

Precedence: built-in default < config file < command-line flag. Per-path settings
(``[paths."name"]`` tables) are read here and grow with later features.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import os
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from streamd.auth.users import User, UsersError, in_networks, parse_users
from streamd.live.multicast_groups import MulticastRange
from streamd.webrtc.port_range import parse_port_range


class ConfigError(Exception):
    """The configuration file or a flag is wrong; the message says where and why."""


MODES = ("tracks", "mpegts")
TRANSCODE_TARGETS = ("aac", "opus")
SOURCE_TRANSPORTS = ("tcp", "udp")
RECORD_FORMATS = ("mp4", "mkv")
ENCRYPTION_MODES = ("no", "optional", "strict")
RTSP_LISTEN = ("on", "loopback", "off")
CLUSTER_MODES = ("relay", "redirect")


def _is_rtsp_url(url: str) -> bool:
    try:
        parts = urlsplit(url)
        _ = parts.port  # raises on a bad port
    except ValueError:
        return False
    return parts.scheme in ("rtsp", "rtsps") and bool(parts.hostname) and not any(c.isspace() for c in url)


@dataclass(frozen=True)
class PathSettings:
    """Settings for one path (or a glob pattern of paths, e.g. ``movies/*.avi``)."""

    loop: bool | None = None  # None: the default for that path (the test stream loops, files do not)
    # "tracks": each track with a payload format of its own; the rest left out (logged).
    # "mpegts": the whole file as one MPEG-TS over RTP (.ts sent as is, others remuxed by PyAV).
    mode: str = "tracks"
    # with mode "tracks": audio tracks whose codec has no payload format are transcoded to this
    transcode_audio: str | None = None
    # accepts a publisher (ANNOUNCE/RECORD); None: paths under live/ do, others do not
    publish: bool | None = None
    # record the live path to segmented files (streamd/live/recorder.py); None below: the server's default
    record: bool = False
    record_format: str | None = None  # "mp4" or "mkv"
    record_segment: float | None = None  # seconds per file (cut at the next video keyframe)
    record_dir: str | None = None  # files go to <record_dir>/<path>/<UTC time>.<ext>
    # answer DESCRIBE/SETUP with 302 to these rtsp:// URLs, round-robin (load balancing)
    redirect: tuple[str, ...] | list[str] = ()
    # relay: pull this rtsp:// URL when the first reader arrives, over "tcp" (interleaved) or "udp"
    source: str | None = None
    source_transport: str = "tcp"
    source_close_after: float = 10.0  # seconds without readers before the upstream is closed
    # send to the path's multicast group whenever it is online (players can join from the SDP
    # alone); without it the group send runs only while an RTSP multicast reader plays
    multicast: bool = False
    # "no", "optional" or "strict" for this path (None: the server's encryption setting)
    encryption: str | None = None
    # relay from an rtsps:// source: verify its certificate (false accepts a self-signed one)
    upstream_tls_verify: bool = True
    # in a cluster, a live path published on another node is pulled from it ("relay", shared by
    # this node's readers) or its readers are sent there with 302 ("redirect")
    cluster_mode: str = "relay"
    # live HLS: this path's DVR window in seconds (None: the server's hls_dvr_seconds)
    hls_dvr_seconds: float | None = None

    def __post_init__(self) -> None:
        dvr = self.hls_dvr_seconds
        if dvr is not None and (
            isinstance(dvr, bool) or not isinstance(dvr, int | float) or not 10 <= dvr <= 86400
        ):
            raise ConfigError(f"hls_dvr_seconds must be between 10 and 86400, not {dvr!r}")
        if self.encryption is not None and self.encryption not in ENCRYPTION_MODES:
            raise ConfigError(f"encryption must be one of {', '.join(ENCRYPTION_MODES)}")
        if not isinstance(self.upstream_tls_verify, bool):
            raise ConfigError("upstream_tls_verify must be true or false")
        if self.cluster_mode not in CLUSTER_MODES:
            raise ConfigError(f"cluster_mode must be one of {', '.join(CLUSTER_MODES)}")
        if self.mode not in MODES:
            raise ConfigError(f"mode must be one of {', '.join(MODES)}, not {self.mode!r}")
        if self.transcode_audio not in (None, *TRANSCODE_TARGETS):
            raise ConfigError(f"transcode_audio must be one of {', '.join(TRANSCODE_TARGETS)}")
        if isinstance(self.redirect, str) or not isinstance(self.redirect, tuple | list):
            raise ConfigError("redirect must be a list of rtsp:// URLs")
        object.__setattr__(self, "redirect", tuple(self.redirect))  # hashable, and TOML gives a list
        for url in (*self.redirect, *([self.source] if self.source is not None else [])):
            if not isinstance(url, str) or not _is_rtsp_url(url):
                raise ConfigError(f"{url!r} is not an rtsp:// or rtsps:// URL with a host")
        if self.source_transport not in SOURCE_TRANSPORTS:
            raise ConfigError(f"source_transport must be one of {', '.join(SOURCE_TRANSPORTS)}")
        if not 0 <= self.source_close_after <= 3600:
            raise ConfigError("source_close_after must be between 0 and 3600 seconds")
        if self.source is not None and (self.redirect or self.publish):
            raise ConfigError("a path with a source cannot also redirect or accept publishers")
        for name in ("record",) + (("publish",) if self.publish is not None else ()):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name} must be true or false")
        if self.record and self.redirect:
            raise ConfigError("a path that redirects has nothing to record")
        _check_recording(self.record_format, self.record_segment)


@dataclass(frozen=True)
class ServerConfig:
    host: str = "0.0.0.0"
    rtsp_port: int = 8554
    http_port: int = 8080
    rtp_port: int = 8000  # UDP RTP port of the shared pair; RTCP uses rtp_port + 1
    media: Path = Path("media")
    session_timeout: int = 60
    max_payload_size: int = 1400
    udp: bool = True
    tcp: bool = True
    test_stream: bool = True
    cache_dir: Path | None = None
    log_level: str = "info"
    # who may use the HTTP API's admin endpoints (drain, move a path): loopback unless widened
    admin_networks: tuple[str, ...] | list[str] = ("127.0.0.0/8", "::1/128")
    # multicast for live paths: groups (one per path; "" disables), RTP ports [first, last] (even
    # RTP port, RTCP the next), TTL, and the address whose interface sends (None: the host's)
    multicast_range: str = "239.255.42.0/24"
    multicast_ports: tuple[int, int] | list[int] = (40000, 40999)
    multicast_ttl: int = 16
    multicast_interface: str | None = None
    # defaults for paths with record = true (each may set its own)
    record_dir: Path | None = None  # None: <media>/recordings, so the catalog serves the files
    record_format: str = "mp4"
    record_segment: float = 60.0
    # live paths as LL-HLS (streamd/hls/live_*.py): segments cut at the first keyframe after
    # hls_live_segment_seconds, parts of about hls_part_seconds, a DVR window per path in memory
    hls_live_segment_seconds: float = 1.0
    hls_part_seconds: float = 0.2
    hls_dvr_seconds: float = 180.0
    hls_dvr_bytes: int = 256 * 1024 * 1024  # per path
    # a recorded path's DVR: older segments stay listed this long, read back from its recording
    hls_dvr_recorded_seconds: float = 3600.0
    hls_idle_seconds: float = 30.0  # a path's HLS stream is let go after this long without a request
    hls_max_blocked: int = 10_000  # blocking playlist/part requests waiting at once (503 beyond)
    # --- timing (the defaults are what clients expect; tests shorten them) ---------------------
    reap_interval: float = 1.0  # seconds between sweeps for sessions that timed out
    min_session_timeout: int = 5  # the floor under session_timeout (a guard against typos)
    rtcp_min_interval: float = 5.0  # RFC 3550 6.2 Tmin for sender reports (the first uses half)
    send_slack: float = 0.002  # what is due this soon is sent in the same pacer wake-up
    precise_pacing: bool = False  # nothing sent early: the pacer wakes for each due time (more CPU)
    precise_pacing_rate: float = 0.0  # bit/s: precise pacing spreads an AU at this link rate (0: no)
    trick_play_all_frames_up_to: float = 4.0  # Scale up to this sends every video frame, beyond: keyframes
    # --- limits (hardening): every buffer, queue and count an outsider can grow is bounded ------
    max_connections: int = 2000  # RTSP connections in total
    max_connections_per_client: int = 100  # from one client address
    request_head_timeout: float = 10.0  # seconds for a complete request head, however it trickles
    max_sessions: int = 5000  # RTSP sessions in total (503 beyond)
    max_sessions_per_client: int = 200  # per client address (453 beyond)
    max_sessions_per_connection: int = 32  # per RTSP connection (453 beyond)
    max_publishers: int = 200  # live paths being published, in total
    max_publishers_per_client: int = 10  # per client address
    max_remuxes: int = 8  # /mp4 responses being remuxed at once, in total (503 beyond)
    max_remuxes_per_client: int = 2  # per client address
    tunnel_pairing_timeout: float = 10.0  # seconds a tunnel's GET half waits for its POST
    max_tunnel_pending_per_client: int = 8  # unpaired GET halves per client address
    admin_token: str | None = None  # if set, admin endpoints also need "Authorization: Bearer <it>"
    serve_dotfiles: bool = False  # files and folders whose name starts with "." are never served
    # --- who may do what (issue 14; README "Security") ------------------------------------------
    users: tuple[User, ...] = ()  # [[users]]; none: reading open, publishing/api/metrics from loopback
    realm: str = "streamd"  # the Digest realm (passwords from `streamd passwd` are made for it)
    # how RTSP clients may log in: "digest" (SHA-256 and MD5) and/or "basic" (the password in clear
    # on the wire; off by default over plain RTSP)
    auth_methods: tuple[str, ...] | list[str] = ("digest",)
    nonce_lifetime: float = 300.0  # seconds a Digest nonce is fresh (then stale=true, the client retries)
    max_nonces_per_client: int = 16  # Digest nonces remembered per client address (oldest forgotten)
    auth_deadline: float = 30.0  # seconds a connection may stay without one authorized request
    login_free_failures: int = 5  # failed logins in a row per address or user before backing off
    login_backoff: float = 1.0  # first back-off (503 + Retry-After), doubling per failure after
    login_max_backoff: float = 300.0  # the longest back-off
    # --- external authorization (streamd.auth.external): an HTTP hook, JWT bearer tokens -------
    auth_hook: str | None = None  # POST each decision as JSON to this http(s):// URL; 2xx allows
    auth_hook_timeout: float = 5.0  # seconds; no answer in time denies
    jwt_key: str | None = None  # PEM public key (or HMAC secret) verifying bearer tokens
    jwt_key_file: str | None = None  # the same, read from this file
    jwt_jwks_url: str | None = None  # or the keys of this JWKS URL (fetched, cached)
    jwt_algorithms: tuple[str, ...] | list[str] = ("RS256", "ES256", "EdDSA")
    jwt_claim: str = "streamd_permissions"  # the claim listing [{action, path}] permissions
    jwt_audience: str | None = None  # if set, tokens must carry it in "aud"
    auth_cache_ttl: float = 5.0  # seconds an external decision is reused (0: never)
    # --- encryption (issue 15; README "Encryption"): RTSPS and HTTPS with one certificate --------
    tls_cert: str | None = None  # PEM certificate chain; with tls_key, RTSPS (and HTTPS) listen
    tls_key: str | None = None  # PEM private key (both files are reloaded when they change)
    rtsps_port: int = 8322
    https_port: int = 8443  # HTTPS, when TLS is configured and HTTP runs
    # plain RTSP: "on", "loopback" (127.0.0.1 only, e.g. behind a local proxy) or "off" (RTSPS only)
    rtsp_listen: str = "on"
    https_redirect: bool = False  # the plain HTTP port answers 308 to the same URL over HTTPS
    tls_handshake_timeout: float = 10.0  # seconds for a TLS handshake before it is dropped
    # "no": clear and TLS alike; "optional": the same for RTSP (SRTP offered where asked);
    # "strict": only over TLS (RTSPS, HTTPS); per path too ([paths] encryption)
    encryption: str = "no"
    # --- HLS for on-demand files (streamd/hls) ---------------------------------------------------
    hls_segment_seconds: float = 4.0  # target segment length; cuts fall on keyframes at or after it
    hls_cache_bytes: int = 256 * 1024 * 1024  # made segments kept in memory, least recently used out
    # --- WebRTC playback over WHEP (streamd/webrtc) --------------------------------------------
    webrtc_ice_servers: tuple[str, ...] | list[str] = ()  # stun:/turn: URLs; none: host candidates only
    webrtc_turn_username: str | None = None  # for the turn: URLs
    webrtc_turn_password: str | None = None
    webrtc_max_pending: int = 64  # sessions whose ICE/DTLS has not completed yet, in total (503 beyond)
    webrtc_max_pending_per_client: int = 16  # per client address
    webrtc_max_sessions: int = 1000  # WebRTC sessions in total
    webrtc_connect_timeout: float = 15.0  # seconds for ICE + DTLS; then the session is freed
    webrtc_file_cache_bytes: int = 256 * 1024 * 1024  # files' chunks converted for WebRTC viewers, LRU
    webrtc_udp_ports: str | list[int] | None = None  # "40000-40999": host candidates' ports; unset: ephemeral
    # --- worker processes (streamd.workers): 1 is one process; "auto" one per core ------------
    workers: int | str = 1
    # --- a cluster of nodes on Redis (streamd.cluster; docs/scaling.md) -------------------------
    cluster: str | None = None  # redis://host:6379/0: register here, claim live paths, pull from peers
    node_address: str | None = None  # rtsp://host:port others reach this node at (default: host, port)
    cluster_heartbeat: float = 2.0  # seconds between registrations; a node is gone after 3 missed
    cluster_balance: bool = False  # send new players (302) to the least-loaded node
    cluster_balance_margin: int = 2  # ... when it holds at least this many sessions fewer than we do
    paths: dict[str, PathSettings] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._check_auth()
        self._check_tls()
        object.__setattr__(self, "workers", _worker_count(self.workers))
        if isinstance(self.hls_segment_seconds, bool) or not 1 <= self.hls_segment_seconds <= 30:
            raise ConfigError("hls_segment_seconds must be between 1 and 30 seconds")
        if isinstance(self.hls_cache_bytes, bool) or not isinstance(self.hls_cache_bytes, int):
            raise ConfigError("hls_cache_bytes must be a whole number of bytes")
        if self.hls_cache_bytes < 0:
            raise ConfigError("hls_cache_bytes must not be negative")
        self._check_cluster()
        if isinstance(self.webrtc_file_cache_bytes, bool) or not isinstance(
            self.webrtc_file_cache_bytes, int
        ):
            raise ConfigError("webrtc_file_cache_bytes must be a whole number of bytes")
        if self.webrtc_file_cache_bytes < 0:
            raise ConfigError("webrtc_file_cache_bytes must not be negative")
        try:
            parse_port_range(self.webrtc_udp_ports)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        for name in ("rtsp_port", "http_port", "rtp_port", "rtsps_port", "https_port"):
            port = getattr(self, name)
            if not 0 <= port <= 65535:
                raise ConfigError(f"{name} must be a port number (0-65535), not {port}")
        if self.rtp_port % 2:
            raise ConfigError(f"rtp_port must be even (RTCP uses the next port), not {self.rtp_port}")
        if self.min_session_timeout < 1:
            raise ConfigError("min_session_timeout must be at least 1 second")
        if self.session_timeout < self.min_session_timeout:
            raise ConfigError(f"session_timeout must be at least {self.min_session_timeout} seconds")
        for name in ("reap_interval", "rtcp_min_interval", "request_head_timeout", "tunnel_pairing_timeout"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 3600:
                raise ConfigError(f"{name} must be a number of seconds between 0 and 3600, not {value!r}")
        if not 0 <= self.send_slack <= 0.1:
            raise ConfigError("send_slack must be between 0 and 0.1 seconds")
        if self.precise_pacing_rate < 0:
            raise ConfigError("precise_pacing_rate must be 0 (no spreading) or a rate in bit/s")
        if not 1 <= self.trick_play_all_frames_up_to <= 1000:
            raise ConfigError("trick_play_all_frames_up_to must be a Scale between 1 and 1000")
        for name in (
            "max_connections",
            "max_connections_per_client",
            "max_sessions",
            "max_sessions_per_client",
            "max_sessions_per_connection",
            "max_publishers",
            "max_publishers_per_client",
            "max_remuxes",
            "max_remuxes_per_client",
            "max_tunnel_pending_per_client",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be a whole number of at least 1, not {value!r}")
        if not 200 <= self.max_payload_size <= 65000:
            raise ConfigError("max_payload_size must be between 200 and 65000 bytes")
        if not (self.udp or self.tcp):
            raise ConfigError("at least one of udp and tcp must be enabled")
        if isinstance(self.admin_networks, str) or not isinstance(self.admin_networks, tuple | list):
            raise ConfigError('admin_networks must be a list of networks, e.g. ["127.0.0.0/8"]')
        try:
            networks = tuple(str(ipaddress.ip_network(n, strict=False)) for n in self.admin_networks)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"admin_networks: {exc}") from exc
        object.__setattr__(self, "admin_networks", networks)
        if isinstance(self.multicast_ports, list):  # TOML gives a list
            object.__setattr__(self, "multicast_ports", tuple(self.multicast_ports))
        try:
            self.multicast_spec()
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        _check_recording(self.record_format, self.record_segment)
        _check_hls(self)

    def _check_auth(self) -> None:
        if isinstance(self.auth_methods, str) or not isinstance(self.auth_methods, tuple | list):
            raise ConfigError('auth_methods must be a list, e.g. ["digest", "basic"]')
        methods = tuple(m.lower() if isinstance(m, str) else m for m in self.auth_methods)
        if not methods or any(m not in ("digest", "basic") for m in methods):
            raise ConfigError(f"auth_methods must name digest and/or basic, not {list(self.auth_methods)}")
        object.__setattr__(self, "auth_methods", methods)
        if not isinstance(self.realm, str) or not self.realm or any(c in self.realm for c in '$"\\\r\n'):
            raise ConfigError("realm must be a non-empty string without $, quotes or backslashes")
        if not isinstance(self.users, tuple | list) or not all(isinstance(u, User) for u in self.users):
            raise ConfigError("users must come from [[users]] tables")
        object.__setattr__(self, "users", tuple(self.users))
        for name in ("nonce_lifetime", "auth_deadline", "login_backoff", "login_max_backoff"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 86400:
                raise ConfigError(f"{name} must be a number of seconds between 0 and 86400, not {value!r}")
        for name in ("max_nonces_per_client", "login_free_failures"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be a whole number of at least 1, not {value!r}")

    def _check_tls(self) -> None:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ConfigError("tls_cert and tls_key go together (PEM files): set both or neither")
        if self.rtsp_listen not in RTSP_LISTEN:
            raise ConfigError(
                f"rtsp_listen must be one of {', '.join(RTSP_LISTEN)}, not {self.rtsp_listen!r}"
            )
        if self.rtsp_listen == "off" and not self.tls:
            raise ConfigError('rtsp_listen = "off" needs tls_cert and tls_key (RTSPS would be all there is)')
        if self.encryption not in ENCRYPTION_MODES:
            raise ConfigError(
                f"encryption must be one of {', '.join(ENCRYPTION_MODES)}, not {self.encryption!r}"
            )
        if not isinstance(self.https_redirect, bool):
            raise ConfigError("https_redirect must be true or false")
        timeout = self.tls_handshake_timeout
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not 0 < timeout <= 3600:
            raise ConfigError(f"tls_handshake_timeout must be seconds between 0 and 3600, not {timeout!r}")

    @property
    def tls(self) -> bool:
        """Whether RTSPS (and HTTPS) are on: a certificate and its key are configured."""
        return self.tls_cert is not None and self.tls_key is not None

    def encryption_for(self, path: str) -> str:
        """The encryption policy of ``path``: its own, else the server's."""
        own = self.path_settings(path).encryption
        return own if own is not None else self.encryption

    def _check_cluster(self) -> None:
        if self.cluster is not None:
            scheme = urlsplit(self.cluster).scheme if isinstance(self.cluster, str) else ""
            if scheme not in ("redis", "rediss", "unix"):
                raise ConfigError(
                    f"cluster must be a redis://, rediss:// or unix:// URL, not {self.cluster!r}"
                )
        if self.node_address is not None and (
            not isinstance(self.node_address, str)
            or not _is_rtsp_url(self.node_address)
            or urlsplit(self.node_address).path not in ("", "/")
        ):
            raise ConfigError(f"node_address must be rtsp://host:port, not {self.node_address!r}")
        value = self.cluster_heartbeat
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0.05 <= value <= 60:
            raise ConfigError(f"cluster_heartbeat must be between 0.05 and 60 seconds, not {value!r}")
        margin = self.cluster_balance_margin
        if isinstance(margin, bool) or not isinstance(margin, int) or margin < 1:
            raise ConfigError(f"cluster_balance_margin must be a whole number of at least 1, not {margin!r}")

    def allows_admin(self, address: str) -> bool:
        """Whether a client at ``address`` may drain the server or move paths."""
        return in_networks(address, (ipaddress.ip_network(n) for n in self.admin_networks))

    def multicast_spec(self) -> MulticastRange | None:
        """The validated multicast range (None: multicast is off); ValueError if it is wrong."""
        if not self.multicast_range:
            return None
        return MulticastRange.parse(self.multicast_range, self.multicast_ports, self.multicast_ttl)

    def accepts_publisher(self, path: str) -> bool:
        settings = self.path_settings(path)
        if settings.source is not None:
            return False  # fed by its relay
        return path.startswith("live/") if settings.publish is None else settings.publish

    def path_settings(self, path: str) -> PathSettings:
        """The settings for ``path``: an exact entry first, else the first glob pattern matching it."""
        exact = self.paths.get(path)
        if exact is not None:
            return exact
        for pattern, settings in self.paths.items():
            if any(ch in pattern for ch in "*?[") and fnmatch.fnmatchcase(path, pattern):
                return settings
        return PathSettings()


def _check_hls(config: ServerConfig) -> None:
    limits = {
        "hls_live_segment_seconds": (0.5, 60.0),
        "hls_part_seconds": (0.05, 5.0),
        "hls_dvr_seconds": (10.0, 86400.0),
        "hls_dvr_bytes": (1 << 20, 1 << 40),
        "hls_dvr_recorded_seconds": (10.0, 7 * 86400.0),
        "hls_idle_seconds": (1.0, 3600.0),
        "hls_max_blocked": (1, 10_000_000),
    }
    for name, (low, high) in limits.items():
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
            raise ConfigError(f"{name} must be between {low:g} and {high:g}, not {value!r}")
    if config.hls_part_seconds > config.hls_live_segment_seconds:
        raise ConfigError("hls_part_seconds must not be longer than hls_live_segment_seconds")


def _worker_count(value: object) -> int:
    """``workers`` as a number: "auto" is one per core this process may run on."""
    if value == "auto":
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        return max(1, cores or 1)
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 1024:
        raise ConfigError(f'workers must be a whole number from 1 to 1024 or "auto", not {value!r}')
    return value


def _check_recording(record_format: str | None, record_segment: float | None) -> None:
    if record_format is not None and record_format not in RECORD_FORMATS:
        raise ConfigError(f"record_format must be one of {', '.join(RECORD_FORMATS)}, not {record_format!r}")
    if record_segment is not None and (
        isinstance(record_segment, bool)
        or not isinstance(record_segment, int | float)
        or not 1 <= record_segment <= 86400
    ):
        raise ConfigError(f"record_segment must be between 1 and 86400 seconds, not {record_segment!r}")


_SIMPLE = {f.name: f for f in fields(ServerConfig) if f.name not in ("paths", "users")}


def load_config(file: Path | None, overrides: dict[str, Any]) -> ServerConfig:
    """Build the configuration from an optional TOML file and flag values (None = not given)."""
    values: dict[str, Any] = {}
    if file is not None:
        try:
            data = tomllib.loads(file.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(f"cannot read config file {file}: {exc.strerror}") from exc
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:  # not UTF-8: not TOML either
            raise ConfigError(f"{file}: {exc}") from exc
        values.update(_from_toml(data, file))
    values.update({k: v for k, v in overrides.items() if v is not None})
    for key in ("tls_cert", "tls_key"):
        if isinstance(values.get(key), Path):
            values[key] = str(values[key].expanduser())
    for key in ("media", "cache_dir", "record_dir"):
        if values.get(key) is not None:
            if not isinstance(values[key], str | Path):
                raise ConfigError(f"{key} must be a path (a string), not {values[key]!r}")
            values[key] = Path(values[key]).expanduser()
    try:
        return ServerConfig(**values)
    except TypeError as exc:
        raise ConfigError(str(exc)) from exc


def _from_toml(data: dict[str, Any], file: Path) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for raw_key, value in data.items():
        key = raw_key.replace("-", "_")
        if key == "paths":
            values["paths"] = _paths(value, file)
        elif key == "users":
            continue  # below, once the realm is known
        elif key in _SIMPLE:
            values[key] = value
        else:
            raise ConfigError(f"{file}: unknown setting {raw_key!r}")
    if "users" in data:
        realm = values.get("realm", ServerConfig.realm)
        try:
            values["users"] = parse_users(data["users"], realm if isinstance(realm, str) else "")
        except UsersError as exc:
            raise ConfigError(f"{file}: {exc}") from None
    return values


def _paths(table: Any, file: Path) -> dict[str, PathSettings]:
    if not isinstance(table, dict):
        raise ConfigError(f"{file}: [paths] must be a table of tables")
    known = {f.name for f in fields(PathSettings)}
    result = {}
    for name, settings in table.items():
        if not isinstance(settings, dict):
            raise ConfigError(f"{file}: [paths.{name!r}] must be a table")
        unknown = set(settings) - known
        if unknown:
            raise ConfigError(f"{file}: unknown setting(s) {sorted(unknown)} for path {name!r}")
        try:
            result[name.strip("/")] = PathSettings(**settings)
        except ConfigError as exc:
            raise ConfigError(f"{file}: path {name!r}: {exc}") from exc
    return result
