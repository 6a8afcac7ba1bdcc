"""TLS for streamd: certificates that reload when their files change, and the acceptor that wraps
a listener's connections in TLS before the RTSP or HTTP protocol sees them (RTSPS, HTTPS)."""
