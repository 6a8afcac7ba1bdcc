"""WebRTC playback (WHEP) of every path: aiortc for ICE/DTLS/SRTP, the path's packets as they are.

``negotiate`` (sans-I/O offer/answer), ``media`` (what browsers can take), ``peer`` (aiortc's ICE
and DTLS transports), ``sink`` (per-viewer header rewrite, SRTP, NACK/PLI), ``whep`` (sessions,
limits, timeouts) and ``routes`` (the HTTP endpoints).
"""
