"""Relay: a live path fed by an upstream RTSP server or camera, pulled on demand.

The first reader's DESCRIBE starts the pull (DESCRIBE, SETUP of every track over TCP interleaved
or UDP, PLAY upstream); the upstream's RTP then goes into a :class:`LivePath` exactly as a
publisher's would, so readers get the same fan-out. The upstream is closed (TEARDOWN) a grace
period after the last reader leaves. When it drops, the path goes offline like a publisher leaving
(readers get RTCP BYE) and, while anyone still wants it, the relay reconnects with back-off
(1, 2, 4 .. 30 s). Like any receiver it sends the upstream RTCP receiver reports (loss, jitter,
LSR/DLSR for its RTT) on the RFC 3550 interval, and RR + BYE before TEARDOWN. Keyframe requests
of the path's readers (a viewer's PLI/FIR, a reader waiting at the keyframe gate) go upstream as
RTCP PLI on the same RTCP channel, rate-limited per path (:mod:`streamd.live.keyframe_relay`).
The protocol is :mod:`streamd.rtsp.client`; this module is only its I/O.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import socket
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from aiortc.rtp import RtcpByePacket, RtcpSrPacket

from sdp import SdpParseError
from sdp import parse as parse_sdp
from streamd.live.announced import announced_tracks
from streamd.live.hub import LivePath, LiveTrack
from streamd.live.keyframe_relay import ChannelBack, PublisherFeedback, UdpBack
from streamd.live.upstream_reports import UpstreamReports
from streamd.rtp.rtcp import parse_compound
from streamd.rtp.rtcp_interval import rtcp_interval
from streamd.rtsp.client import Answered, ClientProtocol, ServerRequest, control_url, split_credentials
from streamd.rtsp.errors import RtspError, reason_phrase
from streamd.rtsp.headers import TransportSpec, format_transport, parse_transport
from streamd.rtsp.message import InterleavedFrame, Response
from streamd.srtp.announce import AnnouncedKeyError, announced_keys
from streamd.srtp.context import Protector, Unprotector
from streamd.srtp.mikey import CryptoSession, build_mikey, format_key_mgmt
from streamd.srtp.suites import MasterKey
from streamd.tls.client import RTSPS_DEFAULT_PORT, client_context, is_secure_url

log = logging.getLogger(__name__)

REQUEST_TIMEOUT = 10.0
DATA_TIMEOUT = 10.0  # no RTP or RTCP from upstream for this long: it is gone
BACKOFF_FIRST, BACKOFF_MAX = 1.0, 30.0
# a DESCRIBE keeps the upstream wanted at least this long, so its SETUP and PLAY find it still there
# (even with source_close_after = 0), and a failed start is retried meanwhile
DEMAND_GRACE = 5.0


# opens the connection to the upstream (reader, writer), when not TCP to the URL's host and port
Opener = Callable[[], Awaitable[tuple[asyncio.StreamReader, asyncio.StreamWriter]]]


def redacted(url: str) -> str:
    """The URL without its password, for logs."""
    clean, user, _ = split_credentials(url)
    if user is None:
        return clean
    parts = urlsplit(clean)
    return urlunsplit((parts.scheme, f"{user}:***@{parts.netloc}", parts.path, parts.query, parts.fragment))


class UpstreamError(Exception):
    """The upstream could not be pulled: ``status`` is what our reader should be told."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class UpstreamConnection:
    """One RTSP/TCP connection to the upstream: requests out, answers and interleaved frames in."""

    def __init__(
        self,
        url: str,
        on_frame: Callable[[InterleavedFrame], None],
        user_agent: str,
        *,
        tls_verify: bool = True,
        opener: Opener | None = None,
    ) -> None:
        self.protocol = ClientProtocol(url, user_agent=user_agent)
        self.tls_verify = tls_verify  # rtsps:// only: check the upstream's certificate and name
        self.opener = opener  # None: TCP (or TLS) to the URL's host and port
        self.on_frame = on_frame
        self.closed = asyncio.Event()
        self.local_host = "0.0.0.0"
        self.peer_host = ""
        self._writer: asyncio.StreamWriter | None = None
        self._reader_task: asyncio.Task[None] | None = None
        self._waiting: dict[int, asyncio.Future[Response]] = {}

    async def connect(self) -> None:
        parts = urlsplit(self.protocol.url)
        secure = is_secure_url(self.protocol.url)
        host, port = parts.hostname or "", parts.port or (RTSPS_DEFAULT_PORT if secure else 554)
        tls = {"ssl": client_context(self.tls_verify)} if secure else {}
        try:
            reader, self._writer = await asyncio.wait_for(
                self.opener() if self.opener else asyncio.open_connection(host, port, **tls),
                REQUEST_TIMEOUT,
            )
        except ssl.SSLError as exc:
            raise UpstreamError(502, f"TLS with {host}:{port} failed: {exc.reason or exc}") from exc
        except (OSError, TimeoutError) as exc:
            raise UpstreamError(503, f"cannot connect to {host}:{port}: {exc or 'timed out'}") from exc
        if self.opener is None:
            self.local_host = self._writer.get_extra_info("sockname")[0]
            self.peer_host = self._writer.get_extra_info("peername")[0]
        self._reader_task = asyncio.get_running_loop().create_task(self._read(reader))

    async def _read(self, reader: asyncio.StreamReader) -> None:
        try:
            while data := await reader.read(65536):
                for event in self.protocol.feed(data):
                    if isinstance(event, InterleavedFrame):
                        self.on_frame(event)
                    elif isinstance(event, Answered):
                        future = self._waiting.pop(event.request.cseq or -1, None)
                        if future is not None and not future.done():
                            future.set_result(event.response)
                    elif isinstance(event, ServerRequest) and self._writer is not None:
                        log.info("upstream sent %s; answering", event.request.method)
                        self._writer.write(bytes(self.protocol.reply_to(event)))
        except (OSError, RtspError) as exc:
            log.info("upstream connection failed: %s", exc)
        finally:
            self.closed.set()
            for future in self._waiting.values():
                if not future.done():
                    future.set_exception(UpstreamError(503, "upstream closed the connection"))
            self._waiting.clear()

    async def request(
        self, method: str, uri: str | None = None, headers: dict[str, str] | None = None
    ) -> Response:
        """Send a request and wait for its answer; a 401 is retried once with the URL's credentials."""
        for _ in range(2):
            response = await self._send(method, uri, headers)
            if not self.protocol.authenticate(response):
                return response
        return response

    async def _send(self, method: str, uri: str | None, headers: dict[str, str] | None) -> Response:
        if self._writer is None or self.closed.is_set():
            raise UpstreamError(503, "upstream connection is closed")
        request = self.protocol.request(method, uri, headers)
        future: asyncio.Future[Response] = asyncio.get_running_loop().create_future()
        self._waiting[request.cseq or -1] = future
        self._writer.write(bytes(request))
        try:
            return await asyncio.wait_for(future, REQUEST_TIMEOUT)
        except TimeoutError as exc:
            raise UpstreamError(503, f"upstream did not answer {method} in {REQUEST_TIMEOUT:.0f} s") from exc

    def send_frame(self, channel: int, data: bytes) -> None:
        """An interleaved frame (our RTCP) on the RTSP connection (RFC 2326 10.12)."""
        if self._writer is not None and not self.closed.is_set() and len(data) <= 0xFFFF:
            self._writer.write(b"$" + bytes([channel]) + len(data).to_bytes(2, "big") + data)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        if self._reader_task is not None:
            self._reader_task.cancel()


class _Datagrams(asyncio.DatagramProtocol):
    def __init__(self, on_data: Callable[[bytes], None]) -> None:
        self.on_data = on_data

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.on_data(data)


async def _udp_pair(
    host: str, on_rtp: Callable[[bytes], None], on_rtcp: Callable[[bytes], None]
) -> tuple[int, list[asyncio.DatagramTransport]]:
    """Two sockets on an even port and the next one (RTP, RTCP), bound to ``host``."""
    loop = asyncio.get_running_loop()
    for _ in range(50):
        rtp, _p = await loop.create_datagram_endpoint(lambda: _Datagrams(on_rtp), local_addr=(host, 0))
        port = rtp.get_extra_info("sockname")[1]
        if port % 2 == 0:
            try:
                rtcp, _p = await loop.create_datagram_endpoint(
                    lambda: _Datagrams(on_rtcp), local_addr=(host, port + 1)
                )
            except OSError:
                rtp.close()
                continue
            for transport in (rtp, rtcp):
                sock = transport.get_extra_info("socket")
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
            return port, [rtp, rtcp]
        rtp.close()
    raise UpstreamError(503, "no free UDP port pair for the upstream's RTP")


@dataclass
class RelayHooks:
    """What the relay needs from the server: who is reading, and where the path goes on/offline."""

    viewers: Callable[[], int]
    online: Callable[[LivePath], None]
    offline: Callable[[LivePath, str], None]


class Relay:
    """Pulls ``source`` into the live path ``name`` while it has readers."""

    def __init__(
        self,
        name: str,
        source: str,
        hooks: RelayHooks,
        *,
        transport: str = "tcp",
        close_after: float = 10.0,
        user_agent: str = "streamd",
        tls_verify: bool = True,
        opener: Opener | None = None,
    ) -> None:
        """``tls_verify``: for an ``rtsps://`` source, whether its certificate must verify.
        ``opener``: how to reach the upstream instead of TCP to the URL's host (a sibling
        worker's private unix socket, :mod:`streamd.workers`)."""
        self.name, self.source, self.hooks = name, source, hooks
        self.tls_verify = tls_verify
        self.opener = opener
        self.transport = transport
        self.close_after = close_after
        self.user_agent = user_agent
        self.label = f"relay {name} <- {redacted(source)}"
        self.live: LivePath | None = None
        self.attempts = 0  # finished pull attempts (successful or not)
        self.last_error: str | None = None
        self.last_status = 503
        self.retrying = False  # waiting for the back-off to pass
        self._task: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()
        self._stopping = False
        self._last_demand = 0.0
        self._last_busy = 0.0
        self._last_packet = 0.0
        self._ended: str | None = None  # set when the upstream says BYE
        self._keepalives: set[asyncio.Task[None]] = set()
        self._reports = UpstreamReports(f"streamd@{socket.gethostname() or 'relay'}")
        self._report_to: dict[int, Callable[[bytes], None]] = {}  # track index -> send upstream
        self._srtp_in: dict[int, Unprotector] = {}  # track index -> the upstream's SRTP key (SDES/MIKEY)

    # --- what the server calls ------------------------------------------------------------

    async def wait_online(self, timeout: float) -> LivePath:
        """The live path once the upstream plays; ``RtspError`` (503, or 404 from upstream) otherwise."""
        loop = asyncio.get_running_loop()
        self._last_demand = loop.time()
        if self.live is not None and self.live.online:
            return self.live
        if self._task is None or self._task.done():
            self._stopping = False
            self._task = loop.create_task(self._run(), name=self.label)
        elif self.retrying and self.last_error is not None:
            raise RtspError(self.last_status, f"upstream unavailable ({self.last_error}); retrying")
        attempts = self.attempts
        deadline = loop.time() + timeout
        while self.live is None or not self.live.online:
            if self.attempts > attempts and self.last_error is not None:
                raise RtspError(self.last_status, f"upstream {redacted(self.source)}: {self.last_error}")
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise RtspError(503, f"upstream {redacted(self.source)} did not start in {timeout:.0f} s")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)
        return self.live

    async def stop(self) -> None:
        self._stopping = True
        if self._task is not None:
            self._notify()
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(self._task, REQUEST_TIMEOUT)

    # --- the pull loop ----------------------------------------------------------------------

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    def _wanted(self, now: float) -> bool:
        recent = now - self._last_demand < max(self.close_after, DEMAND_GRACE)
        return not self._stopping and (self.hooks.viewers() > 0 or recent)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        delay = BACKOFF_FIRST
        while self._wanted(loop.time()):
            went_online = False
            try:
                went_online = await self._pull()
                self.last_error = None
            except UpstreamError as exc:
                self.last_error, self.last_status = exc.reason, exc.status
                log.warning("%s: %s", self.label, exc.reason)
            except Exception as exc:  # a bug must not kill the relay silently
                self.last_error, self.last_status = f"internal error: {exc}", 503
                log.exception("%s: failed", self.label)
            self.attempts += 1
            self._notify()
            if went_online:
                delay = BACKOFF_FIRST
            if not self._wanted(loop.time()):
                break
            log.info("%s: reconnecting in %.0f s", self.label, delay)
            self.retrying = True
            await self._sleep(delay)
            self.retrying = False
            delay = min(delay * 2, BACKOFF_MAX)
        log.info("%s: stopped", self.label)

    async def _sleep(self, seconds: float) -> None:
        """Sleep, but wake up when the relay is stopped."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        while not self._stopping and (remaining := deadline - loop.time()) > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)

    async def _pull(self) -> bool:
        """One upstream session, from connect to close. True when it got as far as playing."""
        channels: dict[int, tuple[LivePath, LiveTrack, bool]] = {}
        sockets: list[asyncio.DatagramTransport] = []

        def on_frame(frame: InterleavedFrame) -> None:
            if (route := channels.get(frame.channel)) is not None:
                self._data(*route, frame.payload)

        upstream = UpstreamConnection(
            self.source, on_frame, self.user_agent, tls_verify=self.tls_verify, opener=self.opener
        )
        try:
            live, aggregate = await self._start(upstream, channels, sockets)
            reason = "relay failed"
            try:
                reason, teardown = await self._pump(upstream, live)
                if teardown:
                    self._send_reports(bye=True)
                    with contextlib.suppress(UpstreamError):
                        await upstream.request("TEARDOWN", aggregate)
            finally:
                self._offline(live, reason)
            return True
        finally:
            upstream.close()
            for transport in sockets:
                transport.close()

    async def _start(
        self,
        upstream: UpstreamConnection,
        channels: dict[int, tuple[LivePath, LiveTrack, bool]],
        sockets: list[asyncio.DatagramTransport],
    ) -> tuple[LivePath, str]:
        """DESCRIBE, SETUP every track, PLAY: the path, online, and its aggregate control URL."""
        await upstream.connect()
        await upstream.request("OPTIONS")  # learns Public (for keep-alives); some servers need it first
        describe = await upstream.request("DESCRIBE", headers={"Accept": "application/sdp"})
        _check(describe, "DESCRIBE")
        try:
            description = parse_sdp(describe.body)
            tracks = announced_tracks(description.media)
            keys = announced_keys(description)
        except (SdpParseError, RtspError, AnnouncedKeyError) as exc:
            raise UpstreamError(503, f"unusable SDP from upstream: {exc}") from exc
        base = (
            describe.headers.get("Content-Base")
            or describe.headers.get("Content-Location")
            or upstream.protocol.url
        )
        aggregate = control_url(base, description.control)
        live = LivePath.from_announce(self.name, description, tracks, f"relay:{self.name}")
        self._reports = UpstreamReports(self._reports.cname)
        self._report_to = {}
        feedback = PublisherFeedback(live, self._reports.ssrc, self._reports.cname)
        live.request_keyframe = lambda: self._request_keyframe(feedback)
        # an upstream that gives SRTP keys (streamd over RTSPS, gst-rtsp-server with SAVP): its
        # packets are checked and decrypted here; our receiver reports go back under a key of ours
        self._srtp_in = {i: Unprotector(k) for i, k in keys.items()}
        ours = Protector(MasterKey.generate()) if keys else None
        for number, announced in enumerate(tracks):
            track = live.tracks[announced.index]
            url = control_url(base, description.media[announced.index].control)
            profile = "RTP/SAVP" if announced.index in keys else "RTP/AVP"
            if self.transport == "tcp":
                wanted = (2 * number, 2 * number + 1)
                spec = TransportSpec(profile, "TCP", "unicast", interleaved=wanted)
                self._reports.add_track(track.index, track.clock_rate)
            else:
                self._reports.add_track(track.index, track.clock_rate)
                port, pair = await _udp_pair(
                    upstream.local_host,
                    lambda data, t=track: self._data(live, t, False, data),
                    lambda data, t=track: self._data(live, t, True, data),
                )
                sockets += pair
                spec = TransportSpec(profile, "UDP", "unicast", client_port=(port, port + 1))
            headers = {"Transport": format_transport(spec)}
            if ours is not None and announced.index in keys:
                reporter = [CryptoSession(0, self._reports.ssrc)]  # GStreamer's servers want one
                mikey = build_mikey(ours.key, reporter, secrets.randbits(32), 0, secrets.token_bytes(16))
                headers["KeyMgmt"] = format_key_mgmt(url, mikey)
            setup = await upstream.request("SETUP", url, headers)
            _check(setup, f"SETUP {announced.control}")
            replies = parse_transport(setup.headers.get("Transport", ""))
            if spec.is_tcp:
                got = replies[0].interleaved if replies and replies[0].interleaved else wanted
                channels[got[0]], channels[got[1]] = (live, track, False), (live, track, True)
                self._report_to[track.index] = lambda data, ch=got[1]: upstream.send_frame(ch, data)
                feedback.route(track.index, ChannelBack(got[1]))
            elif replies and replies[0].server_port and upstream.peer_host:
                rtcp_socket, to = sockets[-1], (upstream.peer_host, replies[0].server_port[1])
                self._report_to[track.index] = lambda data, s=rtcp_socket, a=to: s.sendto(data, a)
                feedback.route(track.index, UdpBack(to))
            send = self._report_to.get(track.index)
            if ours is not None and send is not None and announced.index in keys:
                self._report_to[track.index] = lambda data, f=send, p=ours: f(p.rtcp(data))
        live.online = True  # before PLAY: the packets right behind its answer start with a keyframe
        self._last_packet = asyncio.get_running_loop().time()
        _check(await upstream.request("PLAY", aggregate, {"Range": "npt=0.000-"}), "PLAY")
        self.live = live
        self._ended = None
        self.hooks.online(live)
        log.info("%s: online (%d tracks over %s)", self.label, len(tracks), self.transport.upper())
        self._notify()
        return live, aggregate

    def _request_keyframe(self, feedback: PublisherFeedback) -> None:
        """RTCP PLI upstream for the path's video (at most one per ``PLI_INTERVAL``), on the way
        our receiver reports take (under our SRTP key when the upstream gave keys)."""
        for pli in feedback.request(asyncio.get_running_loop().time()):
            send = self._report_to.get(pli.index)
            if send is not None:
                with contextlib.suppress(OSError):
                    send(pli.packet)
                log.debug("%s: PLI upstream for track %d", self.label, pli.index)

    def _offline(self, live: LivePath, reason: str) -> None:
        live.online = False
        if self.live is live:
            self.live = None
        self.hooks.offline(live, reason)
        log.info("%s: offline (%s)", self.label, reason)

    async def _pump(self, upstream: UpstreamConnection, live: LivePath) -> tuple[str, bool]:
        """Until the upstream goes or nobody reads: (why, whether to send TEARDOWN)."""
        loop = asyncio.get_running_loop()
        self._last_busy = loop.time()
        tick = min(1.0, max(self.close_after / 4, 0.05))
        keepalive_every = max(upstream.protocol.session_timeout / 2, 1.0)
        next_keepalive = loop.time() + keepalive_every
        next_report = loop.time() + self._report_interval(initial=True)
        keepalive = "GET_PARAMETER" if "GET_PARAMETER" in upstream.protocol.public else "OPTIONS"
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(upstream.closed.wait(), tick)
            now = loop.time()
            if self._stopping:
                return "server stopping", True
            if upstream.closed.is_set():
                return "upstream closed the connection", False
            if self._ended is not None:
                return self._ended, True
            if now - self._last_packet > DATA_TIMEOUT:
                return f"no data from upstream for {DATA_TIMEOUT:.0f} s", True
            if self.hooks.viewers() > 0 or live.readers:
                self._last_busy = now
            unwanted = now - self._last_demand >= max(self.close_after, DEMAND_GRACE)
            if unwanted and now - self._last_busy >= self.close_after:
                return f"no readers for {self.close_after:g} s", True
            if now >= next_report:
                self._send_reports()
                next_report = now + self._report_interval()
            if now >= next_keepalive:
                next_keepalive = now + keepalive_every
                task = loop.create_task(self._keepalive(upstream, keepalive))
                self._keepalives.add(task)
                task.add_done_callback(self._keepalives.discard)

    def _report_interval(self, *, initial: bool = False) -> float:
        elapsed = max(asyncio.get_running_loop().time() - self._last_busy, 1.0)
        return rtcp_interval(
            members=2,
            senders=1,
            session_bandwidth=self._reports.octets / elapsed,
            avg_rtcp_size=100,
            we_sent=False,
            initial=initial,
        )

    def _send_reports(self, *, bye: bool = False) -> None:
        now = asyncio.get_running_loop().time()
        for index, report in self._reports.reports(now, bye=bye):
            send = self._report_to.get(index)
            if send is not None:
                with contextlib.suppress(OSError):
                    send(report)

    async def _keepalive(self, upstream: UpstreamConnection, method: str) -> None:
        with contextlib.suppress(UpstreamError):
            await upstream.request(method)

    def _data(self, live: LivePath, track: LiveTrack, is_rtcp: bool, data: bytes) -> None:
        srtp = self._srtp_in.get(track.index)
        if srtp is not None:
            clear = srtp.rtcp(data) if is_rtcp else srtp.rtp(data)
            if clear is None:
                return  # not from the upstream (bad tag, replay): dropped and counted
            data = clear
        now = self._last_packet = asyncio.get_running_loop().time()
        if not is_rtcp:
            self._reports.on_rtp(track.index, data, now)
            live.on_rtp(track, data)
            return
        for packet in parse_compound(data):
            if isinstance(packet, RtcpSrPacket):
                info = packet.sender_info
                self._reports.on_sender_report(track.index, packet.ssrc, info.ntp_timestamp, now)
                live.on_sender_report(track, info.ntp_timestamp, info.rtp_timestamp)
            elif isinstance(packet, RtcpByePacket):
                self._ended = "upstream ended the stream (RTCP BYE)"


def _check(response: Response, what: str) -> None:
    if 200 <= response.status < 300:
        return
    status = 404 if response.status == 404 else 503
    detail = response.reason or reason_phrase(response.status)
    raise UpstreamError(status, f"{what} answered {response.status} {detail}")
