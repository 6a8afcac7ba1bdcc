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

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

Snapshot = Callable[[], list[dict[str, Any]]]


class SessionCollector(Collector):
    def __init__(self, snapshot: Snapshot, tunnels: Callable[[], int]) -> None:
        self.snapshot = snapshot
        self.tunnels = tunnels

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
        labels = ["session", "path", "transport", "track"]
        lost = GaugeMetricFamily(
            "streamd_rtcp_fraction_lost", "Fraction lost in the last receiver report (0-1)", labels=labels
        )
        cumulative = GaugeMetricFamily(
            "streamd_rtcp_packets_lost", "Cumulative packets lost reported by the receiver", labels=labels
        )
        jitter = GaugeMetricFamily(
            "streamd_rtcp_jitter_seconds", "Interarrival jitter reported by the receiver", labels=labels
        )
        rtt = GaugeMetricFamily("streamd_rtcp_rtt_seconds", "Round-trip time (RTCP)", labels=labels)
        for s in sessions:
            path, transport = str(s["path"]), str(s["transport"] or "none")
            by_path[path, transport, str(s["state"])] += 1
            for track in s["tracks"]:
                packets[path, transport] += int(track["packets_sent"])
                octets[path, transport] += int(track["bytes_sent"])
                report = track["rtcp"]
                if not report.get("reports"):
                    continue
                values = [str(s["id"]), path, transport, str(track["control"])]
                lost.add_metric(values, float(report["fraction_lost"]))
                cumulative.add_metric(values, float(report["cumulative_lost"]))
                jitter.add_metric(values, float(report["jitter_ms"]) / 1000)
                if report.get("rtt_ms") is not None:
                    rtt.add_metric(values, float(report["rtt_ms"]) / 1000)
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


def make_registry(snapshot: Snapshot, tunnels: Callable[[], int]) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SessionCollector(snapshot, tunnels))
    return registry


def render(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)
