"""MIKEY (RFC 3830) messages as RTSP carries them (RFC 4567: SDP ``a=key-mgmt:mikey`` and the
``KeyMgmt`` header), parsed and built without I/O.

The subset real clients use: GStreamer's ``rtspsrc``/``rtspclientsink`` and gst-rtsp-server send
a pre-shared-key initiation message whose KEMAC is *not* encrypted and carries no MAC (allowed
because it travels inside TLS), with a timestamp, random bytes, one SRTP security policy and one
traffic-encrypting key (key || salt). Public-key and Diffie-Hellman modes need certificates and
are refused, as are MKIs (the libsrtp binding here has none) and encrypted or MACed KEMACs (a
shared secret we do not have).

GStreamer writes the SRTP authentication *tag* length (4 or 10) into the "session auth key
length" parameter and reads it from there; RFC 3830 has a parameter of its own for it. We read the
tag-length parameter when present, else a 4 or 10 in the key-length one, and write both.
"""

from __future__ import annotations

import base64
import binascii
import struct
from dataclasses import dataclass

from streamd.srtp.suites import SUITES, MasterKey, Suite

__all__ = [
    "CryptoSession",
    "KeyMgmt",
    "MikeyError",
    "MikeyMessage",
    "build_mikey",
    "format_key_mgmt",
    "parse_key_mgmt",
    "parse_mikey",
    "parse_mikey_base64",
]

VERSION = 1
TYPE_PSK_INIT = 0
MAP_SRTP_ID = 0
MAX_MESSAGE = 4096
MAX_KEY_MGMT = 8

# payload types (RFC 3830 section 6.1)
PT_LAST, PT_KEMAC, PT_T, PT_V, PT_SP, PT_RAND, PT_KEY_DATA, PT_GEN_EXT = 0, 1, 5, 9, 10, 11, 20, 21
# SRTP policy parameters (RFC 3830 section 6.10.1; RFC 7714 section 14.3 for AES-GCM)
SP_ENC_ALG, SP_ENC_KEY_LEN, SP_AUTH_ALG, SP_AUTH_KEY_LEN, SP_SALT_LEN = 0, 1, 2, 3, 4
SP_SRTP_ENC, SP_SRTCP_ENC, SP_SRTP_AUTH, SP_TAG_LEN = 7, 8, 10, 11
ENC_NULL, ENC_AES_CM, ENC_AES_GCM = 0, 1, 6
AUTH_NULL, AUTH_HMAC_SHA1 = 0, 1
KD_TEK, KD_TEK_SALT = 2, 3
KV_NULL, KV_SPI, KV_INTERVAL = 0, 1, 2


class MikeyError(ValueError):
    """A MIKEY message we cannot use; the message says why (for the 4xx reason and the log)."""


@dataclass(frozen=True)
class CryptoSession:
    """One row of the SRTP-ID map: which policy protects which SSRC, from which rollover count."""

    policy: int
    ssrc: int
    roc: int = 0


@dataclass(frozen=True)
class MikeyMessage:
    key: MasterKey
    sessions: tuple[CryptoSession, ...]
    csb_id: int


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def take(self, n: int, what: str) -> bytes:
        if self.pos + n > len(self.data):
            raise MikeyError(f"MIKEY message ends inside its {what}")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def byte(self, what: str) -> int:
        return self.take(1, what)[0]

    def u16(self, what: str) -> int:
        return int.from_bytes(self.take(2, what), "big")


def parse_mikey(data: bytes) -> MikeyMessage:
    """A pre-shared-key MIKEY message with a clear KEMAC -> its SRTP key and crypto sessions."""
    if len(data) > MAX_MESSAGE:
        raise MikeyError(f"MIKEY message of {len(data)} bytes is too long")
    r = _Reader(data)
    version, data_type, next_payload, v_prf = r.take(4, "header")
    if version != VERSION:
        raise MikeyError(f"MIKEY version {version} is not supported")
    if data_type != TYPE_PSK_INIT:
        raise MikeyError(f"MIKEY message type {data_type} is not supported (only pre-shared-key initiation)")
    if v_prf & 0x7F:
        raise MikeyError(f"MIKEY PRF {v_prf & 0x7F} is not supported")
    csb_id = int.from_bytes(r.take(4, "header"), "big")
    count, map_type = r.take(2, "header")
    if count and map_type != MAP_SRTP_ID:
        raise MikeyError(f"MIKEY crypto-session map type {map_type} is not supported")
    sessions = tuple(
        CryptoSession(p, ssrc, roc) for p, ssrc, roc in struct.iter_unpack("!BII", r.take(9 * count, "map"))
    )
    policies: dict[int, dict[int, bytes]] = {}
    key: bytes | None = None
    while next_payload != PT_LAST:
        payload = next_payload
        next_payload = r.byte("payload")
        if payload == PT_T:
            ts_type = r.byte("timestamp")
            if ts_type not in (0, 1, 2):
                raise MikeyError(f"MIKEY timestamp type {ts_type} is not supported")
            r.take(4 if ts_type == 2 else 8, "timestamp")
        elif payload == PT_RAND:
            r.take(r.byte("RAND"), "RAND")
        elif payload == PT_SP:
            number, proto = r.take(2, "security policy")
            if proto != 0:
                raise MikeyError(f"MIKEY security protocol {proto} is not SRTP")
            policies[number] = _policy_params(r.take(r.u16("security policy"), "security policy"))
        elif payload == PT_KEMAC:
            if key is not None:
                raise MikeyError("MIKEY message with two KEMAC payloads")
            key = _kemac(r)
        elif payload == PT_V:
            if r.byte("verification") != AUTH_NULL:
                raise MikeyError("MIKEY verification with a MAC is not supported")
        elif payload == PT_GEN_EXT:
            r.byte("extension")
            r.take(r.u16("extension"), "extension")
        else:
            raise MikeyError(f"MIKEY payload type {payload} is not supported")
    if r.pos != len(data):
        raise MikeyError(f"{len(data) - r.pos} bytes after the last MIKEY payload")
    if key is None:
        raise MikeyError("MIKEY message without a key (KEMAC payload)")
    number = sessions[0].policy if sessions else 0
    params = policies.get(number, {} if not policies else next(iter(policies.values())))
    suite = _suite(params)
    if len(key) != suite.material_len:
        raise MikeyError(f"{suite.name} needs {suite.material_len} bytes of key and salt, not {len(key)}")
    return MikeyMessage(MasterKey(suite, key), sessions, csb_id)


def _policy_params(raw: bytes) -> dict[int, bytes]:
    r, params = _Reader(raw), {}
    while r.pos < len(raw):
        kind = r.byte("policy parameter")
        params[kind] = r.take(r.byte("policy parameter"), "policy parameter")
    return params


def _value(params: dict[int, bytes], kind: int, default: int) -> int:
    raw = params.get(kind)
    return int.from_bytes(raw, "big") if raw else default


def _suite(params: dict[int, bytes]) -> Suite:
    """The suite a policy describes (RFC 3830 defaults for what it leaves out)."""
    enc = _value(params, SP_ENC_ALG, ENC_AES_CM)
    enc_len = _value(params, SP_ENC_KEY_LEN, 16)
    for kind in (SP_SRTP_ENC, SP_SRTCP_ENC, SP_SRTP_AUTH):
        if _value(params, kind, 1) == 0:
            raise MikeyError("SRTP without encryption or authentication is not offered")
    if enc_len != 16:
        raise MikeyError(f"SRTP key length {enc_len} is not supported (AES-128 only)")
    if enc == ENC_AES_GCM:
        return SUITES["AEAD_AES_128_GCM"]
    if enc != ENC_AES_CM or _value(params, SP_AUTH_ALG, AUTH_HMAC_SHA1) != AUTH_HMAC_SHA1:
        raise MikeyError(f"SRTP encryption algorithm {enc} with this authentication is not supported")
    tag = _value(params, SP_TAG_LEN, 0)
    if not tag:
        auth_key_len = _value(params, SP_AUTH_KEY_LEN, 20)
        tag = auth_key_len if auth_key_len in (4, 10) else 10  # GStreamer's way of saying the tag length
    if tag not in (4, 10):
        raise MikeyError(f"SRTP authentication tag of {tag} bytes is not supported")
    return SUITES["AES_CM_128_HMAC_SHA1_32" if tag == 4 else "AES_CM_128_HMAC_SHA1_80"]


def _kemac(r: _Reader) -> bytes:
    enc_alg = r.byte("KEMAC")
    inner = _Reader(r.take(r.u16("KEMAC"), "KEMAC"))
    if enc_alg != ENC_NULL:
        raise MikeyError("encrypted MIKEY KEMAC is not supported (send it in clear inside TLS)")
    if r.byte("KEMAC") != AUTH_NULL:
        raise MikeyError("MIKEY KEMAC with a MAC is not supported")
    key: bytes | None = None
    next_payload = PT_KEY_DATA
    while next_payload != PT_LAST:
        if next_payload != PT_KEY_DATA:
            raise MikeyError(f"MIKEY KEMAC holds payload type {next_payload}, not key data")
        next_payload = inner.byte("key data")
        type_kv = inner.byte("key data")
        kind, kv = type_kv >> 4, type_kv & 0xF
        material = inner.take(inner.u16("key data"), "key data")
        if kind not in (KD_TEK, KD_TEK_SALT):
            raise MikeyError(f"MIKEY key type {kind} is not supported (only a TEK)")
        if kind == KD_TEK_SALT:
            material += inner.take(inner.u16("salt"), "salt")
        if kv == KV_SPI:
            raise MikeyError("MIKEY keys with an SPI/MKI are not supported")
        if kv == KV_INTERVAL:
            inner.take(inner.byte("validity"), "validity")
            inner.take(inner.byte("validity"), "validity")
        elif kv != KV_NULL:
            raise MikeyError(f"MIKEY key validity type {kv} is not supported")
        if key is not None:
            raise MikeyError("several MIKEY keys (MKI rollover) are not supported")
        key = material
    if inner.pos != len(inner.data):
        raise MikeyError("bytes after the last MIKEY key data")
    if key is None:
        raise MikeyError("MIKEY KEMAC without a key")
    return key


def build_mikey(key: MasterKey, sessions: list[CryptoSession], csb_id: int, ntp: int, rand: bytes) -> bytes:
    """A pre-shared-key initiation message: clear KEMAC, no MAC (for use inside TLS only).

    ``ntp`` is the 64-bit NTP time for the T payload, ``rand`` at least 16 random bytes."""
    suite = key.suite
    map_info = b"".join(struct.pack("!BII", s.policy, s.ssrc, s.roc) for s in sessions)
    header = struct.pack("!BBBBIBB", VERSION, TYPE_PSK_INIT, PT_T, 0, csb_id, len(sessions), MAP_SRTP_ID)
    timestamp = struct.pack("!BBQ", PT_RAND, 0, ntp)
    random = struct.pack("!BB", PT_SP, len(rand)) + rand
    if suite.aead:
        params = [(SP_ENC_ALG, ENC_AES_GCM), (SP_ENC_KEY_LEN, 16), (SP_AUTH_ALG, AUTH_NULL)]
        params.append((SP_AUTH_KEY_LEN, 0))
    else:
        params = [(SP_ENC_ALG, ENC_AES_CM), (SP_ENC_KEY_LEN, 16), (SP_AUTH_ALG, AUTH_HMAC_SHA1)]
        params.append((SP_AUTH_KEY_LEN, suite.tag_len))  # what GStreamer reads the tag length from
        params.append((SP_TAG_LEN, suite.tag_len))
    params += [(SP_SALT_LEN, suite.salt_len), (SP_SRTP_ENC, 1), (SP_SRTCP_ENC, 1), (SP_SRTP_AUTH, 1)]
    raw_params = b"".join(bytes((kind, 1, value)) for kind, value in params)
    policy = struct.pack("!BBBH", PT_KEMAC, 0, 0, len(raw_params)) + raw_params
    key_data = struct.pack("!BBH", PT_LAST, KD_TEK << 4 | KV_NULL, len(key.material)) + key.material
    kemac = struct.pack("!BBH", PT_LAST, ENC_NULL, len(key_data)) + key_data + bytes((AUTH_NULL,))
    return header + map_info + timestamp + random + policy + kemac


def parse_mikey_base64(text: str) -> MikeyMessage:
    try:
        data = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise MikeyError(f"MIKEY data is not base64: {exc}") from None
    return parse_mikey(data)


# --- the KeyMgmt header (RFC 4567 section 3.3) -------------------------------------------------


@dataclass(frozen=True)
class KeyMgmt:
    prot: str
    uri: str | None
    data: str  # base64


def parse_key_mgmt(value: str) -> list[KeyMgmt]:
    """``prot=mikey;uri="...";data="..."`` entries, comma-separated. MikeyError when malformed."""
    from streamd.rtsp.headers.transport import split_unquoted, unquote

    entries = []
    for spec in split_unquoted(value, ","):
        if not spec.strip():
            continue
        fields: dict[str, str] = {}
        for part in split_unquoted(spec, ";"):
            name, eq, raw = part.partition("=")
            if not part.strip():
                continue
            if not eq:
                raise MikeyError(f"KeyMgmt parameter without a value: {part.strip()[:40]!r}")
            fields[name.strip().lower()] = unquote(raw)
        if not fields.get("prot") or "data" not in fields:
            raise MikeyError("KeyMgmt needs prot= and data=")
        entries.append(KeyMgmt(fields["prot"].lower(), fields.get("uri"), fields["data"]))
        if len(entries) > MAX_KEY_MGMT:
            raise MikeyError("too many KeyMgmt entries")
    if not entries:
        raise MikeyError("empty KeyMgmt header")
    return entries


def format_key_mgmt(uri: str, message: bytes) -> str:
    data = base64.b64encode(message).decode("ascii")
    return f'prot=mikey;uri="{uri}";data="{data}"'
