"""The certificate reload logic: files looked at no more than once per interval, a changed pair
used by new handshakes, a broken one logged and the previous kept."""

from __future__ import annotations

import contextlib
import os
import ssl
from pathlib import Path

import pytest

from streamd.tls.certificates import CertificateError, Certificates, server_context
from tests.tlscerts import make_pair


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def replace(folder: Path, target: Path, name: str) -> None:
    new = make_pair(folder / name, name)
    os.replace(new.key, target / "server.key")
    os.replace(new.cert, target / "server.crt")


def test_context_is_modern(tmp_path: Path) -> None:
    pair = make_pair(tmp_path)
    context = server_context(pair.cert, pair.key)
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2
    assert context.options & ssl.OP_NO_COMPRESSION
    assert not context.check_hostname and context.verify_mode == ssl.CERT_NONE  # no client certs asked


def test_unchanged_files_keep_the_context(tmp_path: Path) -> None:
    pair = make_pair(tmp_path)
    clock = Clock()
    certificates = Certificates(pair.cert, pair.key, clock=clock)
    first = certificates.current
    for _ in range(3):
        clock.now += 5
        assert certificates.refresh() is first
    assert certificates.reloads == 0


def test_changed_files_are_loaded_after_the_interval_only(tmp_path: Path) -> None:
    pair = make_pair(tmp_path)
    clock = Clock()
    certificates = Certificates(pair.cert, pair.key, check_interval=1.0, clock=clock)
    first = certificates.current
    replace(tmp_path, tmp_path, "renewed")
    clock.now += 0.5
    assert certificates.refresh() is first  # not looked at yet: at most one stat pair a second
    clock.now += 0.6
    renewed = certificates.refresh()
    assert renewed is not first
    assert certificates.reloads == 1
    clock.now += 2
    assert certificates.refresh() is renewed


def test_a_pair_that_does_not_load_keeps_the_previous_one(tmp_path: Path) -> None:
    pair = make_pair(tmp_path)
    clock = Clock()
    certificates = Certificates(pair.cert, pair.key, clock=clock)
    first = certificates.current
    other = make_pair(tmp_path / "other", "other")
    os.replace(other.key, pair.key)  # the key of another certificate: half a renewal
    clock.now += 2
    assert certificates.refresh() is first
    assert certificates.reload_failures == 1
    clock.now += 2
    assert certificates.refresh() is first  # not retried until the files change again
    assert certificates.reload_failures == 1
    os.replace(other.cert, pair.cert)  # the other half arrives
    clock.now += 2
    assert certificates.refresh() is not first
    assert certificates.reloads == 1


def test_missing_files_keep_the_previous_one(tmp_path: Path) -> None:
    pair = make_pair(tmp_path)
    clock = Clock()
    certificates = Certificates(pair.cert, pair.key, clock=clock)
    first = certificates.current
    pair.cert.unlink()
    clock.now += 2
    assert certificates.refresh() is first
    assert certificates.reload_failures == 1


def test_bad_files_at_start_are_a_clear_error(tmp_path: Path) -> None:
    pair = make_pair(tmp_path)
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    with pytest.raises(CertificateError, match="cannot load certificate"):
        Certificates(garbage, pair.key)
    with pytest.raises(OSError):
        Certificates(tmp_path / "missing.crt", pair.key)


def test_front_context_switches_each_handshake_to_the_current_one(tmp_path: Path) -> None:
    """A handshake in memory (no socket): the server presents the renewed certificate."""
    pair = make_pair(tmp_path)
    clock = Clock()
    certificates = Certificates(pair.cert, pair.key, clock=clock)
    front = certificates.front_context()
    replace(tmp_path, tmp_path, "renewed")
    clock.now += 2
    assert handshake_certificate(front) == ssl.PEM_cert_to_DER_cert(pair.cert.read_text())


def handshake_certificate(server_context: ssl.SSLContext) -> bytes:
    client_context = ssl.create_default_context()
    client_context.check_hostname = False
    client_context.verify_mode = ssl.CERT_NONE
    c_in, c_out, s_in, s_out = (ssl.MemoryBIO() for _ in range(4))
    client = client_context.wrap_bio(c_in, c_out, server_hostname="localhost")
    server = server_context.wrap_bio(s_in, s_out, server_side=True)
    for _ in range(10):
        for side in (client, server):
            with contextlib.suppress(ssl.SSLWantReadError):
                side.do_handshake()
        s_in.write(c_out.read())
        c_in.write(s_out.read())
    der = client.getpeercert(binary_form=True)
    assert der is not None
    return der


def test_client_context_verifies_unless_told_not_to() -> None:
    from streamd.tls.client import client_context, is_secure_url

    strict, lenient = client_context(True), client_context(False)
    assert strict.verify_mode == ssl.CERT_REQUIRED and strict.check_hostname
    assert lenient.verify_mode == ssl.CERT_NONE and not lenient.check_hostname
    assert strict.minimum_version == lenient.minimum_version == ssl.TLSVersion.TLSv1_2
    assert is_secure_url("RTSPS://cam/x") and not is_secure_url("rtsp://cam/x")
