"""The JSON API (``/api/v1``) and its OpenAPI 3.1 description, kept side by side."""

from __future__ import annotations

from typing import Any

from streamd.version import __version__

_NUMBER_OR_NULL = {"type": ["number", "null"]}
_INT_OR_NULL = {"type": ["integer", "null"]}

PATH_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["name", "rtsp_url", "sdp_url", "watch_url", "viewers", "live", "codecs"],
    "properties": {
        "name": {"type": "string", "description": "the path, as in rtsp://host:port/<name>"},
        "rtsp_url": {"type": "string"},
        "sdp_url": {"type": "string", "description": "SDP with absolute rtsp:// control URLs"},
        "watch_url": {"type": "string"},
        "mp4_url": {
            "type": "string",
            "description": "fragmented MP4 for browsers; ?start=seconds (live: from the next keyframe)",
        },
        "file_url": {"type": "string", "description": "the original file (ranges supported); '' when live"},
        "viewers": {"type": "integer", "description": "sessions on this path, and browsers on a live one"},
        "live": {"type": "boolean", "description": "an endless (looping) stream"},
        "codecs": {"type": "array", "items": {"type": "string"}},
        "width": _INT_OR_NULL,
        "height": _INT_OR_NULL,
        "duration": {**_NUMBER_OR_NULL, "description": "seconds; null when live"},
        "size": _INT_OR_NULL,
        "error": {"type": ["string", "null"], "description": "why the path cannot be streamed"},
        "recording": {"type": "boolean", "description": "a live path being recorded to files now"},
        "multicast_sdp_url": {
            "type": "string",
            "description": "SDP of the path's multicast group, for players joining without RTSP ('' if none)",
        },
        "video_codec": {
            "type": "string",
            "description": "RFC 6381 codecs value of the video track (e.g. hvc1.1.6.L93.B0); '' if none",
        },
        "hls_url": {
            "type": "string",
            "description": "HLS multivariant playlist (files: VOD, ?format=ts for MPEG-TS segments)",
        },
    },
}

MULTICAST_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "a live path's shared multicast send: one per path, one stream per track",
    "properties": {
        "path": {"type": "string"},
        "group": {"type": "string"},
        "ttl": {"type": "integer"},
        "interface": {"type": "string"},
        "sending": {"type": "boolean"},
        "always": {"type": "boolean", "description": "multicast = true: sends whenever the path is online"},
        "rtsp_members": {"type": "integer", "description": "RTSP multicast sessions playing"},
        "tracks": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "control": {"type": "string"},
                    "port": {"type": "integer"},
                    "rtcp_port": {"type": "integer"},
                    "ssrc": {"type": "integer"},
                    "packets_sent": {"type": "integer"},
                    "bytes_sent": {"type": "integer"},
                    "receivers": {
                        "type": "array",
                        "description": "players whose RTCP receiver reports reached the group",
                        "items": {"type": "object"},
                    },
                },
            },
        },
    },
}

RTCP_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "the client's latest RTCP receiver report for this track",
    "properties": {
        "reports": {"type": "integer"},
        "fraction_lost": {"type": "number"},
        "cumulative_lost": {"type": "integer"},
        "jitter_ms": {"type": "number"},
        "rtt_ms": _NUMBER_OR_NULL,
    },
}

SESSION_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["path", "transport", "state", "tracks"],
    "properties": {
        "id": {"type": "string", "description": "for admin clients only"},
        "path": {"type": "string"},
        "client": {"type": "string", "description": "client IP address (for admin clients only)"},
        "transport": {"type": ["string", "null"], "description": "UDP, TCP (interleaved) or UDP multicast"},
        "state": {"type": "string"},
        "age_seconds": {"type": "number"},
        "position": {"type": "number", "description": "npt seconds"},
        "tracks": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "control": {"type": "string"},
                    "codec": {"type": "string"},
                    "ssrc": {"type": "integer"},
                    "sink": {"type": "string"},
                    "packets_sent": {"type": "integer"},
                    "bytes_sent": {"type": "integer"},
                    "rtcp": {"$ref": "#/components/schemas/RtcpStats"},
                },
            },
        },
    },
}


DRAIN_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "draining": {"type": "boolean"},
        "to": {"type": "array", "items": {"type": "string"}},
        "sessions": {"type": "integer", "description": "sessions still open"},
        "moved": {"type": "object", "additionalProperties": {"type": "array", "items": {"type": "string"}}},
        "redirected": {"type": "integer", "description": "clients sent a REDIRECT (POST only)"},
    },
}


def _json_response(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"200": {"description": description, "content": {"application/json": {"schema": schema}}}}


OPENAPI: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "streamd API", "version": __version__},
    "paths": {
        "/api/v1/paths": {
            "get": {
                "summary": "Every servable path with its links, codecs and viewers",
                "parameters": [
                    {"name": "offset", "in": "query", "schema": {"type": "integer", "minimum": 0}},
                    {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1}},
                ],
                "responses": _json_response(
                    "paths",
                    {
                        "type": "object",
                        "properties": {
                            "paths": {"type": "array", "items": {"$ref": "#/components/schemas/Path"}},
                            "more": {"type": "boolean"},
                        },
                    },
                ),
            }
        },
        "/api/v1/drain": {
            "get": {
                "summary": "Whether the server is draining, where to, and how many sessions are left",
                "responses": _json_response("drain state", {"$ref": "#/components/schemas/Drain"}),
            },
            "post": {
                "summary": "Drain for maintenance (admin): REDIRECT playing clients, 302 (or 503) new ones",
                "requestBody": {
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "properties": {
                                    "to": {"type": "array", "items": {"type": "string"}},
                                    "grace": {"type": "number", "description": "seconds, then BYE"},
                                },
                            }
                        }
                    }
                },
                "responses": _json_response("drain state", {"$ref": "#/components/schemas/Drain"}),
            },
            "delete": {
                "summary": "Stop draining (admin)",
                "responses": _json_response("drain state", {"$ref": "#/components/schemas/Drain"}),
            },
        },
        "/api/v1/move/{path}": {
            "post": {
                "summary": "Serve a path from other servers (admin); an empty list serves it here again",
                "parameters": [
                    {"name": "path", "in": "path", "required": True, "schema": {"type": "string"}}
                ],
                "requestBody": {
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "properties": {"to": {"type": "array", "items": {"type": "string"}}},
                            }
                        }
                    }
                },
                "responses": _json_response(
                    "the move",
                    {
                        "type": "object",
                        "properties": {
                            "path": {"type": "string"},
                            "to": {"type": "array", "items": {"type": "string"}},
                            "redirected": {"type": "integer"},
                        },
                    },
                ),
            }
        },
        "/api/v1/sessions": {
            "get": {
                "summary": "A page of RTSP sessions now: transport, path, state, counters, RTCP stats "
                "(session ids and client addresses for admin clients only)",
                "parameters": [
                    {"name": "offset", "in": "query", "schema": {"type": "integer", "minimum": 0}},
                    {
                        "name": "limit",
                        "in": "query",
                        "schema": {"type": "integer", "minimum": 1, "maximum": 1000},
                    },
                ],
                "responses": _json_response(
                    "sessions",
                    {
                        "type": "object",
                        "properties": {
                            "sessions": {"type": "array", "items": {"$ref": "#/components/schemas/Session"}},
                            "more": {"type": "boolean", "description": "whether sessions follow this page"},
                        },
                    },
                ),
            }
        },
        "/api/v1/multicast": {
            "get": {
                "summary": "Every live path's multicast group send: group, ports, SSRCs, receivers' reports",
                "responses": _json_response(
                    "groups",
                    {
                        "type": "object",
                        "properties": {
                            "groups": {"type": "array", "items": {"$ref": "#/components/schemas/Multicast"}}
                        },
                    },
                ),
            }
        },
        "/api/v1/cluster": {
            "get": {
                "summary": "This node in its cluster: its id, whether Redis answers, the nodes it sees, "
                "the live paths it owns, its edge relays (404 when not in a cluster)",
                "responses": _json_response("cluster", {"type": "object"}),
            }
        },
    },
    "components": {
        "schemas": {
            "Drain": DRAIN_SCHEMA,
            "Path": PATH_SCHEMA,
            "Session": SESSION_SCHEMA,
            "RtcpStats": RTCP_SCHEMA,
            "Multicast": MULTICAST_SCHEMA,
        }
    },
}
