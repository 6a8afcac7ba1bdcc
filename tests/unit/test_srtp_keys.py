"""SRTP key exchange without I/O: SDES ``a=crypto`` (RFC 4568), MIKEY (RFC 3830) and the
``KeyMgmt`` header (RFC 4567), and libsrtp's checks on what clients send."""

from __future__ import annotations

import base64
import contextlib
import re
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streamd.srtp.context import Protector, SrtpStats, Unprotector
from streamd.srtp.mikey import (
    CryptoSession,
    MikeyError,
    build_mikey,
    format_key_mgmt,
    parse_key_mgmt,
    parse_mikey,
    parse_mikey_base64,
)
from streamd.srtp.sdes import CryptoAttribute, SdesError, format_crypto, parse_crypto
from streamd.srtp.session import client_key
from streamd.srtp.suites import SUITES, MasterKey

KEY_80 = "WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz"  # RFC 4568's example key||salt (30 bytes)


def key_of(name: str, fill: int = 7) -> MasterKey:
    return MasterKey(SUITES[name], bytes([fill]) * SUITES[name].material_len)


# --- SDES ------------------------------------------------------------------------------------------


def test_sdes_reads_what_rfc_4568_and_ffmpeg_write() -> None:
    attribute = parse_crypto(f"1 AES_CM_128_HMAC_SHA1_80 inline:{KEY_80}|2^31")
    assert attribute.tag == 1 and attribute.key.suite.name == "AES_CM_128_HMAC_SHA1_80"
    assert attribute.key.material == base64.b64decode(KEY_80) and attribute.lifetime == 1 << 31
    assert parse_crypto(f"7 aes_cm_128_hmac_sha1_32 inline:{KEY_80} WSH=128").window == 128
    gcm = base64.b64encode(bytes(28)).decode()
    assert parse_crypto(f"2 AEAD_AES_128_GCM inline:{gcm}").key.suite.tag_len == 16
    assert parse_crypto(f"1 AES_CM_128_HMAC_SHA1_80 inline:{KEY_80.rstrip('=')}").tag == 1


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("1 AES_CM_128_HMAC_SHA1_80", "needs a tag"),
        ("x AES_CM_128_HMAC_SHA1_80 inline:" + KEY_80, "invalid a=crypto tag"),
        ("1 F8_128_HMAC_SHA1_80 inline:" + KEY_80, "not supported"),
        ("1 AES_CM_128_HMAC_SHA1_80 uri:http://x", "only inline"),
        ("1 AES_CM_128_HMAC_SHA1_80 inline:" + KEY_80 + ";inline:" + KEY_80, "several keys"),
        ("1 AES_CM_128_HMAC_SHA1_80 inline:" + KEY_80 + "|2^20|1:4", "below 2^31"),
        ("1 AES_CM_128_HMAC_SHA1_80 inline:" + KEY_80 + "|1:4", "MKI"),
        ("1 AES_CM_128_HMAC_SHA1_80 inline:" + KEY_80 + "|2^99", "invalid key lifetime"),
        ("1 AES_CM_128_HMAC_SHA1_80 inline:" + KEY_80 + " UNENCRYPTED_SRTP", "session parameter"),
        ("1 AES_CM_128_HMAC_SHA1_80 inline:AAAA", "needs 30 bytes"),
        ("1 AES_CM_128_HMAC_SHA1_80 inline:%%%", "not base64"),
        ("1 AEAD_AES_128_GCM inline:" + KEY_80, "needs 28 bytes"),
    ],
)
def test_sdes_refuses_with_a_reason(value: str, why: str) -> None:
    with pytest.raises(SdesError, match=re.escape(why)):
        parse_crypto(value)


@given(
    st.sampled_from(sorted(SUITES)),
    st.integers(1, 999_999_999),
    st.binary(min_size=30, max_size=30),
    st.one_of(st.none(), st.integers(31, 48).map(lambda e: 1 << e), st.integers(1 << 31, 1 << 50)),
    st.one_of(st.none(), st.integers(0, 1 << 31)),
)
def test_sdes_round_trip(name: str, tag: int, raw: bytes, lifetime: int | None, window: int | None) -> None:
    key = MasterKey(SUITES[name], raw[: SUITES[name].material_len])
    attribute = CryptoAttribute(tag, key, lifetime, window)
    assert parse_crypto(format_crypto(attribute)) == attribute


@given(st.text(max_size=300))
def test_sdes_never_fails_other_than_with_its_error(text: str) -> None:
    try:
        attribute = parse_crypto(text)
    except SdesError:
        return
    assert parse_crypto(format_crypto(attribute)) == attribute


# --- MIKEY -----------------------------------------------------------------------------------------


def gstreamer_style(key: bytes, tag_len: int, ssrc: int) -> bytes:
    """A message shaped the way GStreamer's ``gst_mikey_message_new_from_caps`` shapes one: T, RAND,
    SP with the tag length in the auth-key-length parameter (no tag-length parameter), and a
    clear KEMAC with one TEK; built here from RFC 3830's layout."""
    header = struct.pack("!BBBBIBB", 1, 0, 5, 0, 0xCAFE, 1, 0) + struct.pack("!BII", 0, ssrc, 0)
    t = struct.pack("!BBQ", 11, 0, 0xE000000000000000)
    rand = struct.pack("!BB", 10, 16) + bytes(16)
    params = bytes([0, 1, 1, 1, 1, 16, 2, 1, 1, 3, 1, tag_len, 7, 1, 1, 8, 1, 1, 10, 1, 1])
    sp = struct.pack("!BBBH", 1, 0, 0, len(params)) + params
    key_data = struct.pack("!BBH", 0, 0x20, len(key)) + key
    kemac = struct.pack("!BBH", 0, 0, len(key_data)) + key_data + b"\x00"
    return header + t + rand + sp + kemac


@pytest.mark.parametrize(("tag", "suite"), [(10, "AES_CM_128_HMAC_SHA1_80"), (4, "AES_CM_128_HMAC_SHA1_32")])
def test_mikey_reads_gstreamers_messages(tag: int, suite: str) -> None:
    message = parse_mikey(gstreamer_style(bytes(range(30)), tag, 0xDEADBEEF))
    assert message.key == MasterKey(SUITES[suite], bytes(range(30)))
    assert message.sessions == (CryptoSession(0, 0xDEADBEEF, 0),) and message.csb_id == 0xCAFE


def test_mikey_writes_the_tag_length_where_gstreamer_and_the_rfc_look() -> None:
    data = build_mikey(key_of("AES_CM_128_HMAC_SHA1_32"), [CryptoSession(0, 5)], 1, 0, bytes(16))
    sp = data.index(bytes([3, 1, 4]))  # session auth key length = 4: GStreamer's hmac-sha1-32
    assert bytes([11, 1, 4]) in data[sp:]  # and the RFC's authentication tag length parameter
    assert parse_mikey(data).key.suite.name == "AES_CM_128_HMAC_SHA1_32"


def test_mikey_gcm_and_salted_keys() -> None:
    gcm = key_of("AEAD_AES_128_GCM")
    assert parse_mikey(build_mikey(gcm, [], 9, 0, bytes(16))).key == gcm
    salted = bytearray(gstreamer_style(bytes(16), 10, 1))
    # TEK+SALT: 16 key bytes, then a 14-byte salt of its own
    kemac = salted.rindex(bytes([0, 0x20, 0, 16]))
    salted[kemac + 1] = 0x30
    salted[kemac + 4 + 16 : kemac + 4 + 16] = struct.pack("!H", 14) + bytes(range(14))
    length = struct.unpack("!H", salted[kemac - 2 : kemac])[0] + 16
    salted[kemac - 2 : kemac] = struct.pack("!H", length)
    assert parse_mikey(bytes(salted)).key.material == bytes(16) + bytes(range(14))


@pytest.mark.parametrize(
    ("mutate", "why"),
    [
        (lambda d: bytes([2]) + d[1:], "version 2"),
        (lambda d: d[:1] + bytes([4]) + d[2:], "message type 4"),
        (lambda d: d[:3] + bytes([1]) + d[4:], "PRF 1"),
        (lambda d: d[:-20], "ends inside"),
        (lambda d: d + b"\x00", "after the last"),
        (lambda d: d.replace(bytes([0, 1, 1, 1, 1, 16]), bytes([0, 1, 0, 1, 1, 16])), "algorithm 0"),
        (lambda d: d.replace(bytes([1, 1, 16]), bytes([1, 1, 32])), "key length 32"),
        (lambda d: d.replace(bytes([7, 1, 1]), bytes([7, 1, 0])), "without encryption"),
        (lambda d: d.replace(bytes([0, 0x20, 0, 30]), bytes([0, 0x21, 0, 30])), "SPI/MKI"),
        (lambda d: d.replace(bytes([0, 0x20, 0, 30]), bytes([0, 0x00, 0, 30])), "only a TEK"),
        (lambda d: d[:-1] + b"\x01", "with a MAC"),
    ],
)
def test_mikey_refuses_with_a_reason(mutate: object, why: str) -> None:
    assert callable(mutate)
    with pytest.raises(MikeyError, match=re.escape(why)):
        parse_mikey(mutate(gstreamer_style(bytes(range(30)), 10, 1)))


def test_mikey_refuses_an_encrypted_kemac_and_a_missing_key() -> None:
    data = bytearray(gstreamer_style(bytes(30), 10, 1))
    kemac = data.rindex(bytes([0, 0x20, 0, 30])) - 4
    data[kemac + 1] = 1  # AES-CM-128 encrypted: needs a shared secret we do not have
    with pytest.raises(MikeyError, match="encrypted"):
        parse_mikey(bytes(data))
    with pytest.raises(MikeyError, match="without a key"):
        parse_mikey(struct.pack("!BBBBIBB", 1, 0, 0, 0, 1, 0, 0))
    with pytest.raises(MikeyError, match="too long"):
        parse_mikey(bytes(5000))


@given(
    st.sampled_from(sorted(SUITES)),
    st.binary(min_size=30, max_size=30),
    st.lists(
        st.tuples(st.integers(0, 255), st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1)), max_size=4
    ),
    st.integers(0, 2**32 - 1),
    st.integers(0, 2**64 - 1),
    st.binary(min_size=16, max_size=64),
)
def test_mikey_round_trip(
    name: str, raw: bytes, rows: list[tuple[int, int, int]], csb: int, ntp: int, rand: bytes
) -> None:
    key = MasterKey(SUITES[name], raw[: SUITES[name].material_len])
    sessions = [CryptoSession(*row) for row in rows]
    message = parse_mikey(build_mikey(key, sessions, csb, ntp, rand))
    assert (message.key, list(message.sessions), message.csb_id) == (key, sessions, csb)


@given(st.binary(max_size=400))
def test_mikey_never_fails_other_than_with_its_error(data: bytes) -> None:
    with contextlib.suppress(MikeyError):
        parse_mikey(data)


def test_key_mgmt_header() -> None:
    message = build_mikey(key_of("AES_CM_128_HMAC_SHA1_80"), [CryptoSession(0, 1)], 1, 0, bytes(16))
    header = format_key_mgmt("rtsps://h:8322/p/trackID=0", message)
    (entry,) = parse_key_mgmt(header)
    assert entry.prot == "mikey" and entry.uri == "rtsps://h:8322/p/trackID=0"
    assert parse_mikey_base64(entry.data).key == key_of("AES_CM_128_HMAC_SHA1_80")
    assert client_key(f'prot=other;data="x", {header}') == key_of("AES_CM_128_HMAC_SHA1_80")
    for bad, why in (("", "empty"), ("prot=mikey", "data="), ("prot;data=x", "without a value")):
        with pytest.raises(MikeyError, match=why):
            parse_key_mgmt(bad)
    with pytest.raises(MikeyError, match="not base64"):
        client_key('prot=mikey;data="@@@"')
    with pytest.raises(MikeyError, match="without a MIKEY entry"):
        client_key('prot=other;data="x"')


# --- libsrtp: what clients send is authenticated before it counts ------------------------------------

RTP = struct.pack("!BBHII", 0x80, 96, 1, 1000, 0x42) + b"payload" * 20
RR = struct.pack("!BBHI", 0x80, 201, 1, 0x1234)


@pytest.mark.parametrize("name", sorted(SUITES))
def test_protect_unprotect_and_what_is_dropped(name: str) -> None:
    stats = SrtpStats()
    key = key_of(name)
    sender, receiver = Protector(key, stats), Unprotector(key, stats)
    protected = sender.rtp(RTP)
    assert len(protected) == len(RTP) + SUITES[name].tag_len and b"payload" not in protected
    assert receiver.rtp(protected) == RTP
    assert receiver.rtp(protected) is None and stats.replayed == 1  # a replayed index
    tampered = bytearray(sender.rtp(RTP[:2] + b"\x00\x02" + RTP[4:]))
    tampered[-1] ^= 1
    assert receiver.rtp(bytes(tampered)) is None and stats.auth_failed == 1
    assert receiver.rtcp(sender.rtcp(RR)) == RR
    assert receiver.rtcp(RR) is None  # plain RTCP in an SRTP session
    assert receiver.rtp(b"\x80") is None and stats.malformed >= 1
    other = Unprotector(key_of(name, fill=8), stats)
    assert other.rtp(sender.rtp(RTP[:2] + b"\x00\x03" + RTP[4:])) is None  # another key
    assert receiver.dropped == 4 and stats.protected == 3
