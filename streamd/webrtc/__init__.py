"""WebRTC playback (WHEP) of every path: aiortc for ICE/DTLS/SRTP, the path's packets as they are.

``negotiate`` (sans-I/O offer/answer), ``media`` (what browsers can take), ``peer`` (aiortc's ICE
and DTLS transports), ``sink`` (per-viewer header rewrite, SRTP, NACK/PLI), ``live_reader`` (a
live path's viewer), ``nack`` (sans-I/O: NACKs answered from one packet history per path stream),
``playback`` with ``file_chunks``/``chunk_convert``/``chunk_cache`` (a file's viewer; what
browsers cannot take converted once per file, in chunks), ``whep`` (sessions, limits, timeouts)
and ``routes`` (the HTTP endpoints).
"""
