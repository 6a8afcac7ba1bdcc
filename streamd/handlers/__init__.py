"""RTSP request handlers: each gets the narrow collaborators it needs (typed Protocols), never the server."""
