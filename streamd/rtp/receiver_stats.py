"""What a receiver of one RTP stream measures: loss, jitter, reordering, duplicates, lateness.

Sans-I/O: feed ``receive(seq, timestamp, arrival)`` for every packet of one SSRC (arrival in
seconds from any monotonic clock) and ``sender_report(...)`` for the stream's RTCP SRs; read the
counters, or ask for an RTCP report block. Loss and jitter follow RFC 3550 appendix A.1/A.3
(sequence extension with wrap, probation of a new source, restart after a large jump) and A.8
(interarrival jitter in the stream's clock), so what this module reports is what an RFC receiver
would put in its receiver reports. Used by the benchmarks, the tests, and a relay reporting
to its upstream.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from aiortc.rtp import RtcpReceiverInfo

RTP_SEQ_MOD = 1 << 16
RTP_TS_MOD = 1 << 32
MAX_DROPOUT = 3000  # RFC 3550 A.1: a jump ahead this large or larger is suspect
MAX_MISORDER = 100  # and one this far behind is taken as a restart of the sender
MIN_SEQUENTIAL = 2  # packets in sequence before a new source is believed
_DUP_WINDOW = 1024  # extended sequence numbers remembered for duplicate detection


@dataclass(frozen=True, slots=True)
class Arrival:
    """How one packet was classified."""

    valid: bool  # counted (False during probation or for a suspected-restart packet)
    duplicate: bool = False
    reordered: bool = False  # arrived after a packet with a higher sequence number
    late: bool = False  # arrived after its playout deadline
    lateness: float = 0.0  # seconds after the deadline (negative: that much early)


@dataclass
class ReceiverStats:
    """Reception statistics of one RTP stream (one SSRC) in its own clock.

    ``playout_delay`` is the receiver's jitter buffer in seconds: a packet is late when it arrives
    more than that after the time its RTP timestamp asks for, measured from the first counted
    packet (the reference a real player would start its playout clock from).
    """

    clock_rate: int
    playout_delay: float = 0.1
    # RFC 3550 A.1 source state
    max_seq: int = 0
    cycles: int = 0
    base_seq: int = 0
    bad_seq: int = RTP_SEQ_MOD + 1
    probation: int = MIN_SEQUENTIAL
    received: int = 0
    expected_prior: int = 0
    received_prior: int = 0
    # A.8 jitter, in timestamp units (kept as a float; reports carry the integer part)
    jitter: float = 0.0
    transit: float | None = None
    # beyond the RFC
    duplicates: int = 0
    reordered: int = 0
    late: int = 0
    restarts: int = 0
    started: bool = False
    _reference: tuple[float, int] | None = None  # (arrival, timestamp) of the playout reference
    _seen: set[int] = field(default_factory=set)
    _last_sr: tuple[int, float] | None = None  # (middle 32 bits of its NTP time, arrival)

    # --- sequence numbers (A.1) --------------------------------------------------------------

    def _init_seq(self, seq: int) -> None:
        self.base_seq = seq
        self.max_seq = seq
        self.bad_seq = RTP_SEQ_MOD + 1
        self.cycles = 0
        self.received = 0
        self.received_prior = 0
        self.expected_prior = 0
        self._seen.clear()

    def _update_seq(self, seq: int) -> bool:
        """RFC 3550 A.1 ``update_seq``: whether the packet counts."""
        udelta = (seq - self.max_seq) % RTP_SEQ_MOD
        if self.probation:
            if seq == (self.max_seq + 1) % RTP_SEQ_MOD:
                self.probation -= 1
                self.max_seq = seq
                if self.probation == 0:
                    self._init_seq(seq)
                    self.received += 1
                    return True
            else:
                self.probation = MIN_SEQUENTIAL - 1
                self.max_seq = seq
            return False
        if udelta < MAX_DROPOUT:
            if seq < self.max_seq:
                self.cycles += RTP_SEQ_MOD  # wrapped
            self.max_seq = seq
        elif udelta <= RTP_SEQ_MOD - MAX_MISORDER:
            if seq == self.bad_seq:
                # two packets in sequence after a big jump: the sender restarted
                self.restarts += 1
                self._init_seq(seq)
                self._reference = None
                self.transit = None
            else:
                self.bad_seq = (seq + 1) % RTP_SEQ_MOD
                return False
        # else: a duplicate or a packet from behind, counted as received (A.1 does)
        self.received += 1
        return True

    def _extend(self, seq: int) -> int:
        """The extended sequence number of ``seq``, near the highest one seen."""
        top = self.cycles + self.max_seq
        delta = (seq - self.max_seq) % RTP_SEQ_MOD
        if delta >= RTP_SEQ_MOD // 2:
            delta -= RTP_SEQ_MOD
        return top + delta

    # --- packets ------------------------------------------------------------------------------

    def receive(self, seq: int, timestamp: int, arrival: float) -> Arrival:
        """Account one RTP packet: its sequence number, RTP timestamp, and arrival (seconds)."""
        if not self.started:
            self.started = True
            self.max_seq = (seq - 1) % RTP_SEQ_MOD  # A.1: first packet starts probation
        previous_top = self.cycles + self.max_seq
        if not self._update_seq(seq):
            return Arrival(valid=False)
        extended = self._extend(seq)
        if extended in self._seen:
            self.duplicates += 1
            return Arrival(valid=True, duplicate=True)
        self._seen.add(extended)
        if len(self._seen) > 2 * _DUP_WINDOW:
            floor = extended - _DUP_WINDOW
            self._seen = {s for s in self._seen if s > floor}
        reordered = self.received > 1 and extended < previous_top
        if reordered:
            self.reordered += 1
        self._update_jitter(timestamp, arrival)
        lateness = self._lateness(timestamp, arrival)
        late = lateness > 0
        if late:
            self.late += 1
        return Arrival(valid=True, reordered=reordered, late=late, lateness=lateness)

    def _update_jitter(self, timestamp: int, arrival: float) -> None:
        """RFC 3550 A.8: J += (|D| - J) / 16, D the change in transit time, in timestamp units."""
        transit = arrival * self.clock_rate - timestamp
        if self.transit is not None:
            d = transit - self.transit
            # RTP timestamps wrap: take the transit difference modulo 2^32, nearest to zero
            d = (d + RTP_TS_MOD / 2) % RTP_TS_MOD - RTP_TS_MOD / 2
            self.jitter += (abs(d) - self.jitter) / 16
        self.transit = transit

    def _lateness(self, timestamp: int, arrival: float) -> float:
        if self._reference is None:
            self._reference = (arrival, timestamp)
        ref_arrival, ref_ts = self._reference
        ticks = (timestamp - ref_ts) % RTP_TS_MOD
        if ticks >= RTP_TS_MOD // 2:
            ticks -= RTP_TS_MOD
        deadline = ref_arrival + ticks / self.clock_rate + self.playout_delay
        return arrival - deadline

    # --- derived figures (A.3) ----------------------------------------------------------------

    @property
    def extended_max(self) -> int:
        return self.cycles + self.max_seq

    @property
    def expected(self) -> int:
        return self.extended_max - self.base_seq + 1 if self.received else 0

    @property
    def lost(self) -> int:
        """Cumulative packets lost; negative when duplicates outnumber losses (as RFC 3550 allows)."""
        return self.expected - self.received

    @property
    def jitter_seconds(self) -> float:
        return self.jitter / self.clock_rate

    def sender_report(self, ntp_timestamp: int, arrival: float) -> None:
        """Remember an SR (its 64-bit NTP time) for LSR/DLSR in the next report block."""
        self._last_sr = ((ntp_timestamp >> 16) & 0xFFFFFFFF, arrival)

    def report_block(self, ssrc: int, now: float) -> RtcpReceiverInfo:
        """An RFC 3550 6.4.1 report block about this stream, and the start of a new interval.

        ``now`` is on the same clock as the arrivals, for DLSR.
        """
        expected = self.expected
        expected_interval = expected - self.expected_prior
        received_interval = self.received - self.received_prior
        self.expected_prior, self.received_prior = expected, self.received
        lost_interval = expected_interval - received_interval
        fraction = 0
        if expected_interval > 0 and lost_interval > 0:
            fraction = min(255, (lost_interval << 8) // expected_interval)
        lost = max(-(1 << 23), min((1 << 23) - 1, self.lost))  # 24-bit signed field
        lsr = dlsr = 0
        if self._last_sr is not None:
            lsr = self._last_sr[0]
            dlsr = max(0, min(0xFFFFFFFF, round((now - self._last_sr[1]) * 65536)))
        return RtcpReceiverInfo(
            ssrc=ssrc,
            fraction_lost=fraction,
            packets_lost=lost,
            highest_sequence=self.extended_max & 0xFFFFFFFF,
            jitter=int(self.jitter) & 0xFFFFFFFF,
            lsr=lsr,
            dlsr=dlsr,
        )

    def as_dict(self) -> dict[str, float | int]:
        return {
            "received": self.received,
            "expected": self.expected,
            "lost": self.lost,
            "loss_fraction": round(self.lost / self.expected, 6) if self.expected else 0.0,
            "duplicates": self.duplicates,
            "reordered": self.reordered,
            "late": self.late,
            "restarts": self.restarts,
            "jitter_ms": round(1000 * self.jitter_seconds, 3),
        }
