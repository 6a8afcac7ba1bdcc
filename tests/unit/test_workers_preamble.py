"""The preamble of a forwarded TLS connection (streamd/workers/preamble.py): what the receiving
worker authorizes the client by, so it must read exactly what the forwarding worker wrote and
refuse everything else."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from streamd.workers.preamble import MAGIC, MAX_LINE, Preamble, PreambleError, parse

HOSTS = st.ip_addresses().map(str)
PORTS = st.integers(0, 65535)
PREAMBLES = st.builds(
    Preamble,
    kind=st.sampled_from(["rtsp", "tunnel"]),
    client=st.tuples(HOSTS, PORTS),
    local=st.tuples(HOSTS, PORTS),
    secure=st.booleans(),
)


@given(PREAMBLES, st.binary(max_size=64))
def test_what_is_written_is_read_back_and_the_client_bytes_after_it_are_untouched(
    preamble: Preamble, after: bytes
) -> None:
    line = preamble.encode()
    assert len(line) <= MAX_LINE
    assert parse(line + after) == (preamble, len(line))


@given(PREAMBLES, st.data())
def test_a_preamble_cut_anywhere_waits_for_the_rest(preamble: Preamble, data: st.DataObject) -> None:
    line = preamble.encode()
    cut = data.draw(st.integers(0, len(line) - 1))
    assert parse(line[:cut]) is None


FIELDS = st.sampled_from(["rtsp", "tunnel", "tls", "clear", "127.0.0.1", "::1", "1", "65535", "x", "", " "])
NEAR_MISSES = st.lists(FIELDS | st.text(max_size=8), max_size=9).map(
    lambda fields: (" ".join([MAGIC, *fields]) + "\r\n").encode("utf-8", "surrogatepass")
)


@given(st.binary(max_size=300) | NEAR_MISSES | NEAR_MISSES.map(lambda line: line[:-2]))
@example(b"GET / HTTP/1.1\r\n")
@example(b"STREAMD-PIPE/1 rtsp streamd-worker 0 127.0.0.1 1 tls\r\n")  # never a sibling's name
@example(b"STREAMD-PIPE/1 rtsp 127.0.0.1 0 127.0.0.1 1 tls extra\r\n")
@example(b"STREAMD-PIPE/1 rtsp 127.0.0.1 65536 127.0.0.1 1 tls\r\n")
@example("STREAMD-PIPE/1 rtsp 127.0.0.1 ١ 127.0.0.1 1 tls\r\n".encode())  # an Arabic-Indic digit
@example(b"STREAMD-PIPE/1 rtsp 127.0.0.1 00000001 127.0.0.1 1 tls\r\n")
def test_anything_else_is_refused_or_read_as_a_valid_preamble(data: bytes) -> None:
    try:
        parsed = parse(data)
    except PreambleError:
        return
    if parsed is None:  # waiting: only a beginning of the magic may wait, and never for long
        assert len(data) < MAX_LINE and (MAGIC + " ").encode().startswith(data[: len(MAGIC) + 1])
        return
    preamble, used = parsed
    assert data[used - 2 : used] == b"\r\n" and used <= MAX_LINE
    for host, port in (preamble.client, preamble.local):
        ipaddress.ip_address(host)
        assert 0 <= port <= 65535
    assert preamble.encode() == data[:used]  # one spelling only


def test_refusals_say_why() -> None:
    with pytest.raises(PreambleError, match="not a forwarded connection"):
        parse(b"OPTIONS rtsp://x/ RTSP/1.0\r\n")
    with pytest.raises(PreambleError, match="not an IP address"):
        parse(b"STREAMD-PIPE/1 rtsp streamd-worker 0 127.0.0.1 1 tls\r\n")
    with pytest.raises(PreambleError, match="unknown kind"):
        parse(b"STREAMD-PIPE/1 http 127.0.0.1 5 127.0.0.1 1 tls\r\n")
    with pytest.raises(PreambleError, match="unknown security"):
        parse(b"STREAMD-PIPE/1 rtsp 127.0.0.1 5 127.0.0.1 1 maybe\r\n")
    with pytest.raises(PreambleError, match="no preamble line"):
        parse(MAGIC.encode() + b" " * MAX_LINE)
    with pytest.raises(PreambleError, match="not an IP address"):
        Preamble("rtsp", ("?", 0), ("127.0.0.1", 1), True).encode()
