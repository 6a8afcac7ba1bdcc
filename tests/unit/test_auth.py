"""Authentication, sans-I/O: the passwd string, [[users]], the Authorization grammar, Digest (RFC 7616
vectors), nonces (stale, foreign, replayed, bounded), login back-off, and the Authenticator end to
end with the relay's own client (streamd.rtsp.client) answering its challenges."""

from __future__ import annotations

import asyncio
import base64
import contextlib
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streamd.auth.authenticator import Authenticator
from streamd.auth.credentials import Basic, CredentialsError, Digest, parse_authorization
from streamd.auth.digest import challenges, expected_response
from streamd.auth.limits import LoginLimits
from streamd.auth.model import AuthRequest
from streamd.auth.nonces import NonceBook, NonceState
from streamd.auth.secrets import SecretError, ha1, make_secret, parse_secret
from streamd.auth.users import Permission, Policy, User, UsersError, parse_users
from streamd.config import ConfigError, load_config
from streamd.rtsp.client import ClientProtocol
from streamd.rtsp.message import Response

SALT = b"0123456789abcdef"
URI = "rtsp://10.0.0.254:554/cams/door"


def secret(user: str, password: str, realm: str = "streamd") -> str:
    return make_secret(user, password, realm, salt=SALT)


def users() -> tuple[User, ...]:
    return parse_users(
        [
            {
                "name": "viewer",
                "password": secret("viewer", "vpw"),
                "permissions": [{"action": "read", "path": "cams/*"}],
            },
            {
                "name": "pub",
                "password": secret("pub", "ppw"),
                "networks": ["10.0.0.0/8"],
                "permissions": [{"action": "publish", "path": "live/*"}],
            },
            {"name": "any", "permissions": [{"action": "read", "path": "test"}]},
        ],
        "streamd",
    )


# --- the passwd string and [[users]] ---------------------------------------------------------------


def test_rfc7616_example_responses() -> None:
    """RFC 7616 section 3.9.1: the same request answered with MD5 and with SHA-256."""
    args = dict(
        nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",
        method="GET",
        uri="/dir/index.html",
        qop="auth",
        nc="00000001",
        cnonce="f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
    )
    for algorithm, expected in (
        ("MD5", "8ca523f5e9506fed4657c9700eebdbec"),
        ("SHA-256", "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"),
    ):
        h = ha1(algorithm, "Mufasa", "http-auth@example.org", "Circle of Life")
        assert expected_response(algorithm, h, **args) == expected


def test_secret_round_trip_and_basic_check() -> None:
    parsed = parse_secret(secret("viewer", "vpw"))
    assert parsed.realm == "streamd"
    assert parsed.ha1("MD5") == ha1("MD5", "viewer", "streamd", "vpw")
    assert parsed.ha1("SHA-256") == ha1("SHA-256", "viewer", "streamd", "vpw")
    assert parsed.check_password("vpw") and not parsed.check_password("vpw ")
    for bad in ("vpw", "streamd$1$streamd$xx", secret("v", "p").replace("scrypt", "bcrypt")):
        with pytest.raises(SecretError):
            parse_secret(bad)


@given(st.text(max_size=300))
def test_parse_secret_never_raises_anything_else(text: str) -> None:
    with contextlib.suppress(SecretError):
        parse_secret(text)


def test_users_are_checked() -> None:
    with pytest.raises(UsersError, match="streamd passwd"):
        parse_users([{"name": "a", "password": "plain"}], "streamd")
    with pytest.raises(UsersError, match="realm"):
        parse_users([{"name": "a", "password": secret("a", "p", "other")}], "streamd")
    with pytest.raises(UsersError, match="action"):
        parse_users([{"name": "any", "permissions": [{"action": "write", "path": "x"}]}], "streamd")
    with pytest.raises(UsersError, match="twice"):
        parse_users([{"name": "any"}, {"name": "any"}], "streamd")
    with pytest.raises(UsersError, match="networks"):
        parse_users([{"name": "any", "networks": ["nonsense"]}], "streamd")
    with pytest.raises(UsersError, match="no password"):
        parse_users([{"name": "any", "password": secret("any", "p")}], "streamd")


def test_config_file_users(tmp_path: Path) -> None:
    file = tmp_path / "c.toml"
    file.write_text(
        f'realm = "cams"\nauth_methods = ["digest", "basic"]\n[[users]]\nname = "v"\n'
        f'password = "{secret("v", "p", "cams")}"\npermissions = [{{ action = "read", path = "cams/*" }}]\n'
    )
    config = load_config(file, {})
    assert config.realm == "cams" and config.auth_methods == ("digest", "basic")
    assert [u.name for u in config.users] == ["v"]
    file.write_text('[[users]]\nname = "v"\npassword = "hunter2"\n')
    with pytest.raises(ConfigError, match="streamd passwd"):
        load_config(file, {})
    file.write_text('auth_methods = ["ntlm"]\n')
    with pytest.raises(ConfigError, match="auth_methods"):
        load_config(file, {})


def test_policy_defaults_and_globs() -> None:
    defaults = Policy()
    assert defaults.permits("any", "read", "anything/at/all", "192.0.2.1")
    assert not defaults.permits("any", "publish", "live/a", "192.0.2.1")
    assert defaults.permits("any", "publish", "live/a", "127.0.0.1")
    assert defaults.permits("any", "api", "", "::1") and not defaults.permits(
        "any", "metrics", "", "10.1.1.1"
    )
    policy = Policy(users())
    assert policy.permits("viewer", "read", "cams/door", "192.0.2.1")
    assert policy.permits("viewer", "read", "cams/a/b", "192.0.2.1")  # "*" crosses "/" as in [paths.*]
    assert not policy.permits("viewer", "read", "live/x", "192.0.2.1")
    assert policy.permits("viewer", "read", "test", "192.0.2.1"), "everyone has what the anonymous user has"
    assert policy.permits("pub", "publish", "live/x", "10.2.3.4")
    assert not policy.permits("pub", "publish", "live/x", "192.0.2.1"), "outside the user's networks"
    assert not policy.permits("any", "read", "cams/door", "127.0.0.1"), "no defaults once users exist"
    assert Permission("api", "whatever").covers("api", "")


# --- the Authorization header ---------------------------------------------------------------------


def test_authorization_grammar() -> None:
    basic = parse_authorization("Basic " + base64.b64encode(b"v:p:w").decode())
    assert basic == Basic("v", "p:w")
    digest = parse_authorization('Digest username="a\\"b", realm=streamd,nc=00000001 , qop=auth')
    assert isinstance(digest, Digest)
    assert digest.params == {"username": 'a"b', "realm": "streamd", "nc": "00000001", "qop": "auth"}
    for bad in (
        "",
        "Digest",
        "Digest username",
        'Digest username="a" realm="b"',
        'Digest username="a", username="b"',
        'Digest username="unterminated',
        "Basic !!!",
        "Basic " + base64.b64encode(b"nocolon").decode(),
        "Negotiate abc",
        "Digest a=" + "x" * 5000,
    ):
        with pytest.raises(CredentialsError):
            parse_authorization(bad)


@given(st.text(max_size=200))
def test_authorization_parser_never_raises_anything_else(text: str) -> None:
    with contextlib.suppress(CredentialsError):
        parse_authorization(text)


_TOKENS = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_", min_size=1, max_size=12)


@given(
    st.dictionaries(
        _TOKENS, st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=30)
    )
)
def test_digest_params_round_trip(params: dict[str, str]) -> None:
    """What a client quotes (RFC 7230 quoted-string) comes back as it was."""
    if not params:
        return
    text = "Digest " + ", ".join(
        f'{k}="' + v.replace("\\", "\\\\").replace('"', '\\"') + '"' for k, v in params.items()
    )
    parsed = parse_authorization(text)
    assert isinstance(parsed, Digest) and parsed.params == params


# --- nonces and back-off ----------------------------------------------------------------------------


def test_nonces_stale_foreign_replayed_and_bounded() -> None:
    book = NonceBook(lifetime=60, max_per_client=2, secret=b"k" * 32)
    nonce = book.issue("10.0.0.1", 100.0)
    assert book.check(nonce, "10.0.0.1", 110.0, 1) is NonceState.FRESH
    assert book.check(nonce, "10.0.0.1", 110.0, 1) is NonceState.REPLAYED
    assert book.check(nonce, "10.0.0.1", 111.0, 2) is NonceState.FRESH
    assert book.check(nonce, "10.0.0.1", 161.0, 3) is NonceState.STALE, "expired"
    assert book.check(nonce, "10.0.0.2", 110.0, 9) is NonceState.FOREIGN, "issued to another address"
    other_server = NonceBook(secret=b"x" * 32)
    assert other_server.check(nonce, "10.0.0.1", 110.0, 9) is NonceState.FOREIGN, "another server / restart"
    assert book.check("garbage", "10.0.0.1", 110.0, None) is NonceState.FOREIGN
    book.issue("10.0.0.1", 101.0)
    book.issue("10.0.0.1", 102.0)  # a third: the first is forgotten, so it is stale, never replayable
    assert book.dropped == 1
    assert book.check(nonce, "10.0.0.1", 110.0, 50) is NonceState.STALE


def test_login_backoff_per_client_and_user() -> None:
    limits = LoginLimits(free_failures=2, backoff=1.0, max_backoff=4.0)
    for _ in range(2):
        assert limits.retry_after("10.0.0.1", "v", 0.0) == 0
        limits.failed("10.0.0.1", "v", 0.0)
    assert limits.retry_after("10.0.0.1", "v", 0.5) == pytest.approx(0.5)
    assert limits.retry_after("10.0.0.9", "v", 0.5) == 0, "the real user elsewhere is not locked out"
    limits.failed("10.0.0.9", "v", 0.5)  # a second guesser: blocked at once by the user's record
    assert limits.retry_after("10.0.0.9", "v", 0.6) > 0
    for _ in range(10):
        limits.failed("10.0.0.1", "v", 10.0)
    assert limits.retry_after("10.0.0.1", None, 10.0) == 4.0, "doubling stops at max_backoff"
    limits.succeeded("10.0.0.1", "v")
    assert limits.retry_after("10.0.0.1", "v", 10.0) == 0
    assert limits.counters["auth_failures"] == 13 and limits.counters["auth_blocks"] > 0


# --- the Authenticator, answered by the relay's client ----------------------------------------------


def make_authenticator(**kwargs: object) -> Authenticator:
    kwargs.setdefault("nonces", NonceBook(secret=b"s" * 32))
    return Authenticator(Policy(users()), **kwargs)  # type: ignore[arg-type]


def ask(
    auth: Authenticator,
    authorization: str | None,
    *,
    method: str = "DESCRIBE",
    uri: str = URI,
    action: str = "read",
    path: str = "cams/door",
    client: str = "10.0.0.1",
    now: float = 1000.0,
):
    request = AuthRequest("rtsp", method, uri, client, action, path, authorization)  # type: ignore[arg-type]
    return asyncio.run(auth.authorize(request, now))


def login(auth: Authenticator, url: str, **kwargs: object):
    """What a client does: ask, get 401, answer the challenge; the final result and the client."""
    client = ClientProtocol(url)
    first = ask(auth, None, **kwargs)  # type: ignore[arg-type]
    assert first.status == 401
    response = Response(401)
    for challenge in first.challenges:
        response.headers.add("WWW-Authenticate", challenge)
    assert client.authenticate(response)
    method = str(kwargs.get("method", "DESCRIBE"))
    request = client.request(method, str(kwargs.get("uri", URI)))
    return ask(auth, request.headers["Authorization"], **kwargs), client, request  # type: ignore[arg-type]


def test_challenges_offer_sha256_first_then_md5() -> None:
    result = ask(make_authenticator(), None)
    assert result.status == 401 and len(result.challenges) == 2
    assert "algorithm=SHA-256" in result.challenges[0] and "algorithm=MD5" in result.challenges[1]
    assert 'qop="auth"' in result.challenges[0]
    with_basic = ask(make_authenticator(methods=("digest", "basic")), None)
    assert with_basic.challenges[-1] == 'Basic realm="streamd"'
    assert challenges("r", "n", stale=True)[0].endswith("stale=true")


def test_digest_sha256_login_permissions_and_replay() -> None:
    auth = make_authenticator()
    result, client, request = login(auth, "rtsp://viewer:vpw@10.0.0.254:554/cams/door")
    assert result.allowed and result.user == "viewer"
    assert "algorithm=SHA-256" in request.headers["Authorization"]
    replay = ask(auth, request.headers["Authorization"])
    assert replay.status == 401 and "replayed" in replay.reason
    again = client.request("PLAY", URI)
    assert ask(auth, again.headers["Authorization"], method="PLAY").allowed, "nc grows: fine"
    other = client.request("DESCRIBE", "rtsp://10.0.0.254:554/live/x")
    refused = ask(auth, other.headers["Authorization"], uri="rtsp://10.0.0.254:554/live/x", path="live/x")
    assert refused.status == 403 and refused.user == "viewer"


def test_digest_md5_without_qop_as_gstreamer_sends_it() -> None:
    auth = make_authenticator()
    nonce = auth.nonces.issue("10.0.0.1", 1000.0)
    h = ha1("MD5", "viewer", "streamd", "vpw")
    response = expected_response(
        "MD5", h, nonce=nonce, method="DESCRIBE", uri=URI, qop=None, nc=None, cnonce=None
    )
    header = f'Digest username="viewer", realm="streamd", nonce="{nonce}", uri="{URI}", response="{response}"'
    assert ask(auth, header).allowed
    assert ask(auth, header.replace(URI, URI + "x")).reason.startswith("Digest uri")
    assert "wrong realm" in ask(auth, header.replace('realm="streamd"', 'realm="other"')).reason
    assert "unknown user" in ask(auth, header.replace('username="viewer"', 'username="nobody"')).reason
    wrong = header.replace(response, "0" * 32)
    assert "wrong password" in ask(auth, wrong).reason
    expired = ask(auth, header, now=1000.0 + 301)
    assert expired.status == 401 and expired.challenges[0].endswith("stale=true")
    foreign = ask(make_authenticator(nonces=NonceBook(secret=b"t" * 32)), header)
    assert foreign.status == 401 and "foreign" in foreign.reason and "stale" not in foreign.challenges[0]
    assert "separated" in ask(auth, 'Digest username="viewer" realm', client="10.0.0.3").reason


def test_wrong_password_unknown_user_and_backoff() -> None:
    auth = make_authenticator(limits=LoginLimits(free_failures=2, backoff=5))
    for url in ("rtsp://viewer:bad@h/cams/door", "rtsp://nobody:x@h/cams/door"):
        result, _, _ = login(auth, url)
        assert result.status == 401 and not result.allowed
    blocked = ask(auth, 'Digest username="viewer"')
    assert blocked.status == 503 and blocked.headers["Retry-After"] == "5"
    assert ask(auth, None, client="10.9.9.9").status == 401, "other clients carry on"
    assert auth.counters["auth_failures"] == 2


def test_basic_only_where_allowed_and_networks() -> None:
    token = "Basic " + base64.b64encode(b"pub:ppw").decode()
    kwargs = dict(action="publish", path="live/x", method="ANNOUNCE")
    assert "not allowed" in ask(make_authenticator(), token, **kwargs).reason  # type: ignore[arg-type]
    auth = make_authenticator(methods=("digest", "basic"))
    assert ask(auth, token, **kwargs).allowed  # type: ignore[arg-type]
    outside = ask(auth, token, client="192.0.2.7", **kwargs)  # type: ignore[arg-type]
    assert outside.status == 401 and "may not log in from" in outside.reason
    assert ask(auth, None, path="test").allowed, "the anonymous user's path"
    assert ask(auth, None, path="other").status == 403, "no login could help: 403, no challenge"
    alt = AuthRequest("rtsp", "OPTIONS", URI, "10.0.0.1", "read", "live/x", token, alternatives=("publish",))
    assert asyncio.run(auth.authorize(alt, 1000.0)).allowed, "OPTIONS: a publisher's will do"


@given(st.text(max_size=120), st.one_of(st.none(), st.integers(0, 2**32)))
def test_nonce_check_never_raises(nonce: str, nc: int | None) -> None:
    book = NonceBook(secret=b"k" * 32)
    assert book.check(nonce, "10.0.0.1", 0.0, nc) in (NonceState.FOREIGN, NonceState.STALE)


def test_streamd_passwd_prints_one_string(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import io

    from streamd.cli import main

    monkeypatch.setattr("sys.stdin", io.StringIO("s3cret pw\n"))
    assert main(["passwd", "viewer", "--realm", "cams"]) == 0
    [line] = capsys.readouterr().out.splitlines()
    parsed = parse_secret(line)
    assert parsed.realm == "cams" and parsed.check_password("s3cret pw")
    assert parsed.ha1("SHA-256") == ha1("SHA-256", "viewer", "cams", "s3cret pw")
    monkeypatch.setattr("sys.stdin", io.StringIO("\n"))
    assert main(["passwd", "viewer"]) == 1
