"""Encryption policy: what may travel in clear, decided in one pure place (issue 15)."""
