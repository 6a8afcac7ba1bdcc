"""The RTCP report interval of RFC 3550 section 6.3.1 (with the 6.2 bandwidth rules), for a sender.

RTCP gets 5 % of the session bandwidth; when senders are fewer than a quarter of the members they
share a quarter of it. The deterministic interval is members x average RTCP size / bandwidth, at
least 5 s (2.5 s before the first report), then randomised over [0.5, 1.5] and divided by
e - 3/2 to compensate for the timer reconsideration bias.
"""

from __future__ import annotations

import math
import random

RTCP_BANDWIDTH_FRACTION = 0.05
SENDER_SHARE = 0.25
MIN_INTERVAL = 5.0
COMPENSATION = math.e - 1.5


def rtcp_interval(
    *,
    members: int,
    senders: int,
    session_bandwidth: float,  # bytes per second of the RTP data
    avg_rtcp_size: float,  # bytes, including UDP/IP headers
    we_sent: bool,
    initial: bool,
    rng: random.Random | None = None,
    min_interval: float = MIN_INTERVAL,
) -> float:
    """Seconds until the next report (RFC 3550 6.3.1). ``min_interval`` is Tmin (tests shorten it)."""
    rtcp_bw = max(session_bandwidth * RTCP_BANDWIDTH_FRACTION, 1.0)
    n = max(members, 1)
    if 0 < senders <= SENDER_SHARE * members:
        if we_sent:
            rtcp_bw *= SENDER_SHARE
            n = senders
        else:
            rtcp_bw *= 1 - SENDER_SHARE
            n = members - senders
    t_min = min_interval / 2 if initial else min_interval
    deterministic = max(t_min, n * avg_rtcp_size / rtcp_bw)
    return deterministic * (rng or random).uniform(0.5, 1.5) / COMPENSATION
