"""The encryption policy as a pure decision, at the auth seam, and in the configuration."""

from __future__ import annotations

import pytest

from streamd.auth.model import AuthRequest, AuthResult
from streamd.config import ConfigError, PathSettings, ServerConfig
from streamd.security.gate import EncryptionGate
from streamd.security.policy import ENCRYPTION_REQUIRED, decide


@pytest.mark.parametrize("policy", ["no", "optional"])
@pytest.mark.parametrize("secure", [False, True])
def test_no_and_optional_let_everything_through(policy: str, secure: bool) -> None:
    assert decide(policy, secure) is None
    assert decide(policy, secure, "RTP/AVP") is None


def test_strict_refuses_clear_connections_only() -> None:
    refusal = decide("strict", secure=False)
    assert refusal is not None
    assert refusal.status == ENCRYPTION_REQUIRED == 403
    assert "rtsps://" in refusal.reason
    assert decide("strict", secure=True) is None
    assert decide("strict", secure=True, profile="RTP/AVP/TCP") is None  # inside TLS


class Allow:
    def __init__(self) -> None:
        self.asked: list[AuthRequest] = []

    async def authorize(self, request: AuthRequest, now: float) -> AuthResult:
        self.asked.append(request)
        return AuthResult(True, user="any")


def request(path: str, secure: bool) -> AuthRequest:
    return AuthRequest("rtsp", "DESCRIBE", f"rtsp://h/{path}", "10.0.0.1", "read", path, secure=secure)


async def test_gate_refuses_before_credentials_are_looked_at() -> None:
    config = ServerConfig(paths={"cams/*": PathSettings(encryption="strict")})
    inner = Allow()
    gate = EncryptionGate(inner, config.encryption_for)
    refused = await gate.authorize(request("cams/door", secure=False), 0.0)
    assert (refused.allowed, refused.status) == (False, 403)
    assert "encryption required" in refused.reason
    assert inner.asked == []
    assert (await gate.authorize(request("cams/door", secure=True), 0.0)).allowed
    assert (await gate.authorize(request("movies/a.mp4", secure=False), 0.0)).allowed
    assert gate.refused == 1


def test_config_policy_per_server_and_path() -> None:
    config = ServerConfig(
        encryption="strict", paths={"public/*": PathSettings(encryption="no")}, tls_cert="c", tls_key="k"
    )
    assert config.encryption_for("public/a") == "no"
    assert config.encryption_for("other") == "strict"
    assert ServerConfig().encryption_for("x") == "no"


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"encryption": "always"}, "encryption must be one of"),
        ({"tls_cert": "c"}, "go together"),
        ({"rtsp_listen": "maybe"}, "rtsp_listen must be one of"),
        ({"rtsp_listen": "off"}, "needs tls_cert"),
        ({"tls_handshake_timeout": 0}, "tls_handshake_timeout"),
        ({"rtsps_port": 70000}, "rtsps_port"),
        ({"https_redirect": "yes"}, "https_redirect"),
    ],
)
def test_config_errors(settings: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        ServerConfig(**settings)  # type: ignore[arg-type]


def test_path_settings_errors_and_rtsps_sources() -> None:
    with pytest.raises(ConfigError, match="encryption"):
        PathSettings(encryption="sometimes")
    with pytest.raises(ConfigError, match="upstream_tls_verify"):
        PathSettings(upstream_tls_verify="no")  # type: ignore[arg-type]
    assert PathSettings(source="rtsps://cam:322/live", upstream_tls_verify=False).source


def test_no_tls_config_means_no_tls() -> None:
    config = ServerConfig()
    assert not config.tls
    assert config.rtsp_listen == "on" and config.encryption == "no"
