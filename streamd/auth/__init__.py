"""Who may read, publish and administer: users, credentials, permissions (issue 14).

Every request of every protocol (RTSP, the RTSP-over-HTTP tunnels, HTTP pages and API) asks one
:class:`~streamd.auth.model.Authorizer` the same question (who, which action, which path, from where)
and gets one :class:`~streamd.auth.model.AuthResult` back. Parsing and checking are sans-I/O; only
the external hook and JWKS fetching touch the network.
"""
