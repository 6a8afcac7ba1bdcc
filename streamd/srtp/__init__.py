"""SRTP/SRTCP (RFC 3711) for UDP, multicast and interleaved delivery, keys by SDES (RFC 4568) or
MIKEY (RFC 3830/4567). ``suites``, ``sdes`` and ``mikey`` are sans-I/O; ``context`` wraps libsrtp
(pylibsrtp); ``sink`` protects what a session sends."""
