"""A small deterministic byte mutator (the usual libFuzzer-style moves) for the bounded runs in the
test suite: seeded ``random.Random``, so a failure names a seed that reproduces it anywhere."""

from __future__ import annotations

import random

# Bytes and tokens that matter to the grammars we fuzz: separators, digits, limits, framing.
TOKENS = (
    b"\r\n", b"\n", b"\r\n\r\n", b"$", b":", b";", b"=", b",", b"-", b"/", b'"', b" ", b"\t", b"\x00",
    b"0", b"1", b"65535", b"65536", b"4294967295", b"99999999999999999999", b"-1", b".", b"now",
    b"Content-Length: 99999\r\n", b"CSeq: 1\r\n", b"RTSP/1.0", b"HTTP/1.1", b"npt=", b"interleaved=",
    b"client_port=", b"a=fmtp:96 ", b"a=rtpmap:96 ", b"m=video 0 RTP/AVP 96\r\n", b"==", b"\xff\xff",
    b"\x80", b"\x7f", b"\xc0\x80", b"\xe2\x80\xa8", b"%", b"%zz", b"[", b"]",
)  # fmt: skip
MAX_SIZE = 16384


def mutate(data: bytes, rng: random.Random, others: list[bytes] | None = None) -> bytes:
    """``data`` with 1-4 random edits (flip, set, insert, delete, duplicate, token, splice)."""
    out = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        move = rng.randrange(8)
        pos = rng.randint(0, len(out))
        if move == 0 and out:  # flip a bit
            i = rng.randrange(len(out))
            out[i] ^= 1 << rng.randrange(8)
        elif move == 1 and out:  # set a byte to an interesting value
            out[rng.randrange(len(out))] = rng.choice((0, 1, 0x7F, 0x80, 0xFF, rng.randrange(256)))
        elif move == 2:  # insert random bytes
            out[pos:pos] = rng.randbytes(rng.randint(1, 8))
        elif move == 3 and out:  # delete a run
            del out[pos : pos + rng.randint(1, 16)]
        elif move == 4 and out:  # duplicate a run somewhere else
            start = rng.randrange(len(out))
            piece = out[start : start + rng.randint(1, 64)]
            out[pos:pos] = piece * rng.randint(1, 4)
        elif move == 5:  # insert a token
            out[pos:pos] = rng.choice(TOKENS)
        elif move == 6 and others:  # splice with another input
            other = rng.choice(others)
            cut = rng.randint(0, len(other))
            out[pos:] = other[cut:]
        elif move == 7 and out:  # change a 16-bit field (lengths, sequence numbers)
            i = rng.randrange(len(out))
            out[i : i + 2] = rng.choice((0, 1, 0xFFFF, 0x8000, rng.randrange(65536))).to_bytes(2, "big")
    return bytes(out[:MAX_SIZE])
