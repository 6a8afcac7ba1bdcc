"""What a client's RTCP receiver reports tell us about one of our streams (RFC 3550 6.4.2).

RFC 3550 6.4.1: the cumulative number lost is a signed 24-bit count (expected - received), negative
when duplicates outnumber losses, and "if the loss is negative due to duplicates, the fraction lost
is set to zero". Some receivers (the live555 family: VLC, openRTSP) send a cumulative -1 with a
fraction of 255, the byte of a negative interval loss; a fraction is therefore believed only when
the cumulative count grew since the previous report, i.e. when the interval lost something.
"""

from __future__ import annotations

from dataclasses import dataclass

from aiortc.rtp import RtcpReceiverInfo

from streamd.rtp.clock import ntp_middle32


@dataclass
class ReceptionReport:
    """The latest receiver-report figures for one outgoing stream, kept per session."""

    reports: int = 0
    fraction_lost: float = 0.0  # 0..1, since the previous report
    cumulative_lost: int = 0
    highest_sequence: int = 0
    jitter_ticks: int = 0
    jitter_ms: float = 0.0
    rtt_ms: float | None = None
    _previous_lost: int | None = None  # cumulative lost of the previous report, if any

    def update(self, info: RtcpReceiverInfo, clock_rate: int, now_ntp: int, sr_sent: int | None) -> None:
        """Fold one report block in. ``sr_sent`` is the NTP time of the SR its LSR names, if known."""
        self.reports += 1
        lost = _signed24(info.packets_lost)
        interval_lost = lost - (self._previous_lost or 0)
        self.fraction_lost = info.fraction_lost / 256 if interval_lost > 0 else 0.0
        self.cumulative_lost = lost
        self._previous_lost = lost
        self.highest_sequence = info.highest_sequence
        self.jitter_ticks = info.jitter
        self.jitter_ms = 1000 * info.jitter / clock_rate if clock_rate else 0.0
        if info.lsr and sr_sent is not None:
            # RTT = arrival - LSR - DLSR, all in 1/65536 s units (RFC 3550 6.4.1).
            rtt_units = (ntp_middle32(now_ntp) - info.lsr - info.dlsr) & 0xFFFFFFFF
            if rtt_units < 0x80000000:
                self.rtt_ms = 1000 * rtt_units / 65536

    def as_dict(self) -> dict[str, float | int | None]:
        return {
            "reports": self.reports,
            "fraction_lost": round(self.fraction_lost, 4),
            "cumulative_lost": self.cumulative_lost,
            "jitter_ms": round(self.jitter_ms, 3),
            "rtt_ms": None if self.rtt_ms is None else round(self.rtt_ms, 3),
        }


def _signed24(value: int) -> int:
    """The cumulative-lost field as the signed 24-bit number it is (whatever a parser made of it)."""
    value &= 0xFFFFFF
    return value - (1 << 24) if value & 0x800000 else value
