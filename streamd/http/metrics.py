"""Prometheus metrics, computed from the server's session snapshot at each scrape.

A custom collector on a registry of our own (not the process-global one), so nothing has to be
updated on the packet path and two servers in one process do not clash.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from streamd.srtp.context import SRTP_STATS, SrtpStats

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

Snapshot = Callable[[], list[dict[str, Any]]]


# what the login limits counted (streamd.auth: failures, back-offs, blocks, nonces dropped,
# connections closed for sending no authorized request), each a counter since start
AUTH_COUNTERS = {
    "auth_failures": "Failed logins (wrong or missing credentials)",
    "auth_backoffs": "Requests answered 503 while their client or user was backing off",
    "auth_blocks": "Failed logins that started or lengthened a back-off",
    "auth_nonces_dropped": "Digest nonces forgotten because a client held too many",
    "auth_deadline_closes": "Connections closed for sending no authorized request in time",
    # TLS and the encryption policy (issue 15)
    "encryption_refusals": "Requests refused for arriving in clear for a path with strict encryption",
    "tls_handshakes_failed": "TLS handshakes (RTSPS, HTTPS) that failed: not TLS, no common cipher, ...",
    "tls_handshakes_timed_out": "TLS handshakes dropped for not finishing within tls_handshake_timeout",
    "tls_certificate_reloads": "Times the certificate was reloaded after its files changed",
}


class SessionCollector(Collector):
    def __init__(
        self,
        snapshot: Snapshot,
        tunnels: Callable[[], int],
        auth: Callable[[], dict[str, int]] = dict,
        srtp: Callable[[], SrtpStats] = lambda: SRTP_STATS,
    ) -> None:
        self.snapshot = snapshot
        self.tunnels = tunnels
        self.auth = auth
        self.srtp = srtp  # with worker processes: the counters summed over every worker

    def collect(self) -> Iterator[Metric]:
        sessions = self.snapshot()
        by_path: Counter[tuple[str, str, str]] = Counter()
        packets: Counter[tuple[str, str]] = Counter()
        octets: Counter[tuple[str, str]] = Counter()
        count = GaugeMetricFamily(
            "streamd_sessions", "RTSP sessions set up now", labels=["path", "transport", "state"]
        )
        sent = CounterMetricFamily(
            "streamd_rtp_packets_sent", "RTP packets sent by current sessions", labels=["path", "transport"]
        )
        sent_bytes = CounterMetricFamily(
            "streamd_rtp_bytes_sent",
            "RTP bytes sent by current sessions",
            labels=["path", "transport"],
        )
        # per path, transport and track, never per session: ids are secrets, and their number unbounded
        labels = ["path", "transport", "track"]
        lost = GaugeMetricFamily(
            "streamd_rtcp_fraction_lost",
            "Worst fraction lost in the receivers' last reports (0-1)",
            labels=labels,
        )
        cumulative = GaugeMetricFamily(
            "streamd_rtcp_packets_lost", "Cumulative packets lost reported by the receivers", labels=labels
        )
        jitter = GaugeMetricFamily(
            "streamd_rtcp_jitter_seconds",
            "Worst interarrival jitter reported by the receivers",
            labels=labels,
        )
        rtt = GaugeMetricFamily("streamd_rtcp_rtt_seconds", "Worst round-trip time (RTCP)", labels=labels)
        worst_lost: dict[tuple[str, ...], float] = {}
        lost_sum: Counter[tuple[str, ...]] = Counter()
        worst_jitter: dict[tuple[str, ...], float] = {}
        worst_rtt: dict[tuple[str, ...], float] = {}
        for s in sessions:
            path, transport = str(s["path"]), str(s["transport"] or "none")
            by_path[path, transport, str(s["state"])] += 1
            for track in s["tracks"]:
                packets[path, transport] += int(track["packets_sent"])
                octets[path, transport] += int(track["bytes_sent"])
                report = track["rtcp"]
                if not report.get("reports"):
                    continue
                key = (path, transport, str(track["control"]))
                worst_lost[key] = max(worst_lost.get(key, 0.0), float(report["fraction_lost"]))
                lost_sum[key] += int(report["cumulative_lost"])
                worst_jitter[key] = max(worst_jitter.get(key, 0.0), float(report["jitter_ms"]) / 1000)
                if report.get("rtt_ms") is not None:
                    worst_rtt[key] = max(worst_rtt.get(key, 0.0), float(report["rtt_ms"]) / 1000)
        for key in sorted(worst_lost):
            lost.add_metric(list(key), worst_lost[key])
            cumulative.add_metric(list(key), lost_sum[key])
            jitter.add_metric(list(key), worst_jitter[key])
            if key in worst_rtt:
                rtt.add_metric(list(key), worst_rtt[key])
        for key, n in sorted(by_path.items()):
            count.add_metric(list(key), n)
        for key in sorted(packets):
            sent.add_metric(list(key), packets[key])
            sent_bytes.add_metric(list(key), octets[key])
        yield count
        yield sent
        yield sent_bytes
        yield lost
        yield cumulative
        yield jitter
        yield rtt
        yield GaugeMetricFamily("streamd_http_tunnels", "Open RTSP-over-HTTP tunnels", value=self.tunnels())
        counts = self.auth()
        for name, text in AUTH_COUNTERS.items():
            yield CounterMetricFamily(f"streamd_{name}", text, value=counts.get(name, 0))
        # SRTP (issue 15): packets protected, and what clients sent that failed its checks
        srtp = self.srtp()
        yield CounterMetricFamily(
            "streamd_srtp_packets_protected", "RTP packets sent as SRTP", value=srtp.protected
        )
        yield CounterMetricFamily(
            "streamd_srtp_packets_authenticated",
            "SRTP/SRTCP packets from clients that passed authentication",
            value=srtp.unprotected,
        )
        dropped = CounterMetricFamily(
            "streamd_srtp_dropped", "SRTP/SRTCP packets from clients dropped", labels=["reason"]
        )
        for reason, value in (
            ("auth", srtp.auth_failed),
            ("replay", srtp.replayed),
            ("malformed", srtp.malformed),
            ("no_client_key", srtp.unkeyed),
        ):
            dropped.add_metric([reason], value)
        yield dropped


def make_registry(
    snapshot: Snapshot,
    tunnels: Callable[[], int],
    auth: Callable[[], dict[str, int]] = dict,
    srtp: Callable[[], SrtpStats] = lambda: SRTP_STATS,
) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SessionCollector(snapshot, tunnels, auth, srtp))
    return registry


def render(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)
