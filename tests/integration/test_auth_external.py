"""External authorization against real local servers: an HTTP hook that allows or denies, JWTs
signed with an HMAC key and with RSA keys served as a JWKS, the decision cache (issue 14, item 4)."""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from cryptography.hazmat.primitives.asymmetric import rsa

from streamd.auth.defaults import DefaultAuthorizer
from streamd.auth.external import ExternalAuthorizer, with_external
from streamd.auth.jwt_tokens import JwtVerifier
from streamd.auth.model import AuthRequest
from streamd.catalog import Catalog
from streamd.config import ConfigError, ServerConfig
from streamd.http import build_app
from streamd.server import RtspServer
from tests.integration.authfake import TableAuthorizer, basic

pytestmark = pytest.mark.integration

SECRET = "a-shared-secret-of-at-least-32-bytes!"
CAMS = [{"action": "read", "path": "cams/*"}]


def ask(action: str = "read", path: str = "cams/door", **kw: Any) -> AuthRequest:
    values: dict[str, Any] = dict(protocol="http", method="GET", uri=f"/mp4/{path}", client="10.0.0.7")
    values.update(kw)
    return AuthRequest(action=action, path=path, **values)  # type: ignore[arg-type]


def hs256(permissions: list[dict[str, str]], *, exp: float | None = None, key: str = SECRET) -> str:
    claims = {"sub": "alice", "exp": int(exp if exp is not None else time.time() + 600)}
    return jwt.encode({**claims, "streamd_permissions": permissions}, key, algorithm="HS256")


# --- the hook --------------------------------------------------------------------------------------


@pytest.fixture
async def hook() -> AsyncIterator[tuple[str, list[dict[str, Any]]]]:
    """A hook allowing alice/right to read cams/*, answering 403 to all else; records each call."""
    calls: list[dict[str, Any]] = []

    async def decide(request: web.Request) -> web.Response:
        body = await request.json()
        calls.append(body)
        ok = (body["user"], body["password"]) == ("alice", "right") and body["path"].startswith("cams/")
        return web.Response(status=204 if ok else 403)

    app = web.Application()
    app.router.add_post("/auth", decide)
    async with TestServer(app) as server:
        yield str(server.make_url("/auth")), calls


async def test_hook_allows_and_denies_and_gets_the_request(hook: tuple[str, list[dict[str, Any]]]) -> None:
    url, calls = hook
    auth = ExternalAuthorizer(DefaultAuthorizer(ServerConfig()), hook=url, cache_ttl=0)
    allowed = await auth.authorize(ask(authorization=basic("alice", "right")["Authorization"]), 0.0)
    assert allowed.allowed and allowed.user == "alice"
    assert calls[-1] == {
        "user": "alice",
        "password": "right",
        "token": "",
        "client": "10.0.0.7",
        "action": "read",
        "path": "cams/door",
        "protocol": "http",
    }
    wrong = await auth.authorize(ask(authorization=basic("alice", "wrong")["Authorization"]), 0.0)
    assert not wrong.allowed and wrong.status == 403
    anonymous = await auth.authorize(ask(), 0.0)
    assert anonymous.status == 401 and anonymous.challenges == ('Basic realm="streamd"',)
    elsewhere = await auth.authorize(
        ask(path="other/x", authorization=basic("alice", "right")["Authorization"]), 0.0
    )
    assert elsewhere.status == 403
    digest = await auth.authorize(ask(authorization='Digest username="alice", response="x"'), 0.0)
    assert digest.status == 401 and calls[-1]["user"] == ""  # a Digest answer holds no password


async def test_hook_decisions_are_cached_briefly(hook: tuple[str, list[dict[str, Any]]]) -> None:
    url, calls = hook
    auth = ExternalAuthorizer(DefaultAuthorizer(ServerConfig()), hook=url, cache_ttl=5.0)
    header = basic("alice", "right")["Authorization"]
    for i in range(20):  # an RTSP session's requests, or the segments of a stream
        assert (await auth.authorize(ask(authorization=header), i * 0.1)).allowed
    assert auth.hook_calls == 1 and auth.cache.hits == 19
    assert not (await auth.authorize(ask(authorization=basic("alice", "x")["Authorization"]), 1.0)).allowed
    assert auth.hook_calls == 2  # other credentials: another decision
    assert (await auth.authorize(ask(authorization=header), 6.0)).allowed
    assert auth.hook_calls == 3 and len(calls) == 3  # after the TTL the hook is asked again


async def test_unreachable_hook_denies_and_is_not_remembered(unused_tcp_port: int) -> None:
    auth = ExternalAuthorizer(
        DefaultAuthorizer(ServerConfig()), hook=f"http://127.0.0.1:{unused_tcp_port}/auth", hook_timeout=2
    )
    header = basic("alice", "right")["Authorization"]
    for _ in range(2):
        result = await auth.authorize(ask(authorization=header), 0.0)
        assert not result.allowed and result.status == 403 and "unreachable" in result.reason
    assert auth.hook_calls == 2


# --- JWT --------------------------------------------------------------------------------------------


async def test_hs256_tokens_grant_their_claimed_permissions() -> None:
    verifier = JwtVerifier(algorithms=["HS256"], key=SECRET)
    auth = ExternalAuthorizer(DefaultAuthorizer(ServerConfig()), verifier=verifier)
    token = hs256(CAMS)
    by_header = await auth.authorize(ask(authorization=f"Bearer {token}"), 0.0)
    assert by_header.allowed and by_header.user == "alice"
    assert (await auth.authorize(ask(token=token), 0.0)).allowed  # ?jwt=
    refused = await auth.authorize(ask(path="other/x", token=token), 0.0)
    assert not refused.allowed and refused.status == 403
    assert (await auth.authorize(ask("metrics", "", token=hs256([{"action": "metrics"}])), 0.0)).allowed


@pytest.mark.parametrize(
    "token",
    [
        hs256(CAMS, exp=time.time() - 60),  # expired
        hs256(CAMS, key="another-secret-of-at-least-32-bytes!!"),  # wrong signature
        jwt.encode({"sub": "alice", "streamd_permissions": CAMS}, SECRET, algorithm="HS256"),  # no exp
        jwt.encode(
            {"sub": "a", "exp": int(time.time()) + 60, "streamd_permissions": CAMS}, "", algorithm="none"
        ),
        "not.a.token",
        hs256([{"path": "cams/*"}]),  # a permission without an action
    ],
)
async def test_bad_tokens_are_refused(token: str) -> None:
    auth = ExternalAuthorizer(
        DefaultAuthorizer(ServerConfig()), verifier=JwtVerifier(algorithms=["HS256"], key=SECRET)
    )
    result = await auth.authorize(ask(authorization=f"Bearer {token}"), 0.0)
    assert not result.allowed and result.status == 401 and "invalid_token" in result.challenges[0]


@pytest.fixture
async def jwks() -> AsyncIterator[tuple[str, rsa.RSAPrivateKey, list[int]]]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    fetched: list[int] = []

    async def keys(request: web.Request) -> web.Response:
        fetched.append(1)
        return web.json_response({"keys": [{**public, "kid": "k1", "use": "sig", "alg": "RS256"}]})

    app = web.Application()
    app.router.add_get("/jwks.json", keys)
    async with TestServer(app) as server:
        yield str(server.make_url("/jwks.json")), key, fetched


async def test_rs256_tokens_verified_with_a_jwks(jwks: tuple[str, rsa.RSAPrivateKey, list[int]]) -> None:
    url, key, fetched = jwks
    verifier = JwtVerifier(algorithms=["RS256"], jwks_url=url)
    auth = ExternalAuthorizer(DefaultAuthorizer(ServerConfig()), verifier=verifier, cache_ttl=0)
    claims = {"sub": "cam-viewer", "exp": int(time.time()) + 600, "streamd_permissions": CAMS}
    good = jwt.encode(claims, key, algorithm="RS256", headers={"kid": "k1"})
    for now in (0.0, 1.0, 2.0):
        result = await auth.authorize(ask(token=good), now)
        assert result.allowed and result.user == "cam-viewer"
    assert len(fetched) == 1  # the keys are kept
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = jwt.encode(claims, stranger, algorithm="RS256", headers={"kid": "k1"})
    assert (await auth.authorize(ask(token=forged), 3.0)).status == 401
    unknown = jwt.encode(claims, stranger, algorithm="RS256", headers={"kid": "k2"})
    assert (await auth.authorize(ask(token=unknown), 4.0)).status == 401
    assert len(fetched) == 1  # an unknown key id refetches at most every JWKS_REFETCH seconds
    assert (await auth.authorize(ask(token=unknown), 100.0)).status == 401 and len(fetched) == 2
    # HS256 signed with the public key as secret (algorithm confusion) is not accepted
    confused = jwt.encode(claims, "k1-public-" * 4, algorithm="HS256", headers={"kid": "k1"})
    assert (await auth.authorize(ask(token=confused), 101.0)).status == 401


async def test_jwt_cache_counts_hits(jwks: tuple[str, rsa.RSAPrivateKey, list[int]]) -> None:
    url, key, _ = jwks
    auth = ExternalAuthorizer(
        DefaultAuthorizer(ServerConfig()), verifier=JwtVerifier(algorithms=["RS256"], jwks_url=url)
    )
    claims = {"sub": "v", "exp": int(time.time()) + 600, "streamd_permissions": CAMS}
    token = jwt.encode(claims, key, algorithm="RS256", headers={"kid": "k1"})
    for _ in range(10):
        assert (await auth.authorize(ask(token=token), 0.0)).allowed
    assert auth.cache.hits == 9


# --- configuration and the HTTP side ---------------------------------------------------------------


def test_config_errors(tmp_path: Path) -> None:
    inner = DefaultAuthorizer(ServerConfig())
    assert with_external(ServerConfig(), inner) is inner  # nothing external configured
    for bad in (
        {"auth_hook": "ftp://x"},
        {"jwt_key": "k", "jwt_jwks_url": "http://x/jwks"},
        {"jwt_key": "k", "jwt_algorithms": ["HS256", "RS256"]},
        {"jwt_jwks_url": "http://x/jwks", "jwt_algorithms": ["HS256"]},
        {"jwt_key_file": str(tmp_path / "missing.pem")},
        {"auth_cache_ttl": -1},
    ):
        with pytest.raises(ConfigError):
            with_external(dataclasses.replace(ServerConfig(), **bad), inner)
    (tmp_path / "key").write_text(SECRET)
    config = dataclasses.replace(ServerConfig(), jwt_key_file=str(tmp_path / "key"), jwt_algorithms=["HS256"])
    assert isinstance(with_external(config, inner), ExternalAuthorizer)


async def test_http_routes_take_tokens_in_the_query(media_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "cams").mkdir()
    (tmp_path / "cams" / "door.mp4").write_bytes((media_dir / "ten.mp4").read_bytes())
    config = ServerConfig(rtsp_port=8554, jwt_key=SECRET, jwt_algorithms=["HS256"])
    server = RtspServer(config, Catalog(tmp_path, test_stream=None))
    server.authorizer = with_external(config, TableAuthorizer())
    async with TestClient(TestServer(build_app(server, server.catalog))) as client:
        token = hs256(CAMS)
        assert (await client.get(f"/sdp/cams/door.mp4?jwt={token}")).status == 200
        assert (
            await client.get("/sdp/cams/door.mp4", headers={"Authorization": f"Bearer {token}"})
        ).status == 200
        assert (await client.get(f"/sdp/cams/door.mp4?jwt={hs256(CAMS, key='x' * 40)}")).status == 401
        listed = await (await client.get(f"/api/v1/paths?jwt={token}")).json()
        assert [p["name"] for p in listed["paths"]] == ["cams/door.mp4"]
        assert (
            await client.get("/sdp/cams/door.mp4", headers=basic("viewer", "vpass"))
        ).status == 200  # local users


async def test_admin_token_is_no_jwt() -> None:
    config = dataclasses.replace(
        ServerConfig(), admin_token="sesame", jwt_key=SECRET, jwt_algorithms=["HS256"]
    )
    auth = with_external(config, DefaultAuthorizer(config))
    result = await auth.authorize(ask("api", "", client="127.0.0.1", authorization="Bearer sesame"), 0.0)
    assert result.allowed
    wrong = await auth.authorize(ask("api", "", client="127.0.0.1", authorization="Bearer sesamf"), 0.0)
    assert not wrong.allowed and wrong.status == 401
