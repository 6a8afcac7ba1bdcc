"""The SRTP crypto suites we offer, their key sizes and libsrtp profiles, and master keys."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field

import pylibsrtp

__all__ = ["SUITES", "MasterKey", "Suite", "suite_named"]


@dataclass(frozen=True)
class Suite:
    """One SRTP crypto suite (RFC 4568 section 6.2, RFC 7714 section 14.2 names)."""

    name: str
    key_len: int  # master key bytes
    salt_len: int  # master salt bytes
    tag_len: int  # authentication tag bytes added to each packet
    profile: int  # pylibsrtp.Policy.SRTP_PROFILE_*
    aead: bool = False

    @property
    def material_len(self) -> int:
        """key || salt, as SDES inline and MIKEY key data carry it."""
        return self.key_len + self.salt_len


_P = pylibsrtp.Policy
SUITES: dict[str, Suite] = {
    s.name: s
    for s in (
        Suite("AES_CM_128_HMAC_SHA1_80", 16, 14, 10, _P.SRTP_PROFILE_AES128_CM_SHA1_80),
        Suite("AES_CM_128_HMAC_SHA1_32", 16, 14, 4, _P.SRTP_PROFILE_AES128_CM_SHA1_32),
        Suite("AEAD_AES_128_GCM", 16, 12, 16, _P.SRTP_PROFILE_AEAD_AES_128_GCM, aead=True),
    )
}
DEFAULT_SUITE = SUITES["AES_CM_128_HMAC_SHA1_80"]


def suite_named(name: str) -> Suite | None:
    return SUITES.get(name.upper())


@dataclass(frozen=True)
class MasterKey:
    """A master key and salt for one suite (one direction of one stream, or a multicast group)."""

    suite: Suite
    material: bytes = field(repr=False)  # key || salt

    def __post_init__(self) -> None:
        if len(self.material) != self.suite.material_len:
            raise ValueError(
                f"{self.suite.name} needs {self.suite.material_len} bytes of key and salt, "
                f"not {len(self.material)}"
            )

    @classmethod
    def generate(cls, suite: Suite = DEFAULT_SUITE) -> MasterKey:
        """A fresh random key from the operating system's CSPRNG."""
        return cls(suite, secrets.token_bytes(suite.material_len))
