"""The edge key: what an archive's edge sends to the verify endpoint.

``<server id>.<secret>``: the id names the server (no lookup table), the
secret is 256 random bits; only its SHA-256 is kept, on the server row
(``registry.replace_edge_key`` makes one; the old one stops working at once).
"""

from __future__ import annotations

import hashlib
import secrets

# Longer than any key we make: refused before hashing.
MAX_LENGTH = 128


def hashed(raw: str) -> str:
    # 256 random bits: a fast hash cannot be brute-forced (as API keys).
    return hashlib.sha256(raw.encode()).hexdigest()


def server_id_of(raw: str) -> int | None:
    """The server a key names, or None for anything not shaped like a key."""
    if not raw or len(raw) > MAX_LENGTH:
        return None
    prefix, dot, secret = raw.partition(".")
    if not dot or not secret or not (prefix.isascii() and prefix.isdigit()):
        return None
    if len(prefix) > 19 or prefix.startswith("0"):
        return None
    return int(prefix)


def new_edge_key(server_id: int) -> str:
    return f"{server_id}.{secrets.token_urlsafe(32)}"
