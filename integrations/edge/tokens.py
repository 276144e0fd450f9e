"""Edge tokens: minted for the access answer, one per (user, enforced server).

A token is a JWT signed with the registry's current key (ES256, ``kid`` in
its header): ``iss`` the registry's public origin, ``sub`` the normalised
email, ``aud`` ``pacsbin-edge:<server id>``, ``iat``, ``exp``, ``jti``.

Time is cut into windows of half the token lifetime: a token's ``iat`` is the
start of the window it was asked in, so it has at least half its life left
when handed out. Within a window every worker mints the very same bytes (the
claims follow from the window, ``jti`` from the claims, and the signature is
deterministic, RFC 6979): the answer and its ETag stay the same whichever
worker answers, so a 304 still means "nothing changed". Signing costs more
than the access query, so each worker also remembers the tokens it minted.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from django.conf import settings

from integrations.edge import keys

AUDIENCE_PREFIX = "pacsbin-edge:"
# Where REGISTRY_PUBLIC_ORIGIN is unset (debug, tests): a development origin.
DEVELOPMENT_ISSUER = "http://127.0.0.1:8000"
# Tokens kept per worker before the memory is emptied (a few MB at most).
MAX_REMEMBERED = 50_000


def issuer() -> str:
    return settings.REGISTRY_PUBLIC_ORIGIN or DEVELOPMENT_ISSUER


def audience(server_id: int) -> str:
    return f"{AUDIENCE_PREFIX}{server_id}"


@dataclass(frozen=True)
class Token:
    value: str
    expires: int  # seconds since the epoch (the ``exp`` claim)

    @property
    def expires_at(self) -> str:
        """``exp`` in ISO 8601 UTC, as the access answer gives it."""
        return datetime.fromtimestamp(self.expires, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def window_start(now: int, lifetime: int) -> int:
    """The start of the window ``now`` falls in (windows of half a lifetime)."""
    half = max(1, lifetime // 2)
    return now - now % half


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _json(value: dict[str, Any]) -> bytes:
    return json.dumps(value, separators=(",", ":"), sort_keys=True).encode()


def mint(email: str, server_id: int, key: keys.SigningKey, now: int) -> Token:
    lifetime = settings.EDGE_TOKEN_LIFETIME
    issued = window_start(now, lifetime)
    claims: dict[str, Any] = {
        "iss": issuer(),
        "sub": email,
        "aud": audience(server_id),
        "iat": issued,
        "exp": issued + lifetime,
    }
    # Unique per token, and the same in every worker.
    claims["jti"] = _b64(hashlib.sha256(key.kid.encode() + _json(claims)).digest()[:16])
    header = {"alg": keys.ALGORITHM, "kid": key.kid, "typ": "JWT"}
    signing_input = f"{_b64(_json(header))}.{_b64(_json(claims))}"
    der = key.private_key.sign(
        signing_input.encode(),
        ec.ECDSA(hashes.SHA256(), deterministic_signing=True),
    )
    r, s = decode_dss_signature(der)
    signature = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    return Token(f"{signing_input}.{_b64(signature)}", issued + lifetime)


_remembered: dict[tuple[str, int, str, str, int, int], Token] = {}
_lock = threading.Lock()


def token_for(email: str, server_id: int) -> Token:
    """The token of (email, server) for the current window: remembered, or
    minted (the same bytes any other worker mints)."""
    key = keys.current()
    lifetime = settings.EDGE_TOKEN_LIFETIME
    issued = window_start(int(time.time()), lifetime)
    slot = (email, server_id, key.kid, issuer(), lifetime, issued)
    found = _remembered.get(slot)
    if found is not None:
        return found
    token = mint(email, server_id, key, issued)
    with _lock:
        if len(_remembered) >= MAX_REMEMBERED:
            _remembered.clear()
        _remembered[slot] = token
    return token


def forget() -> None:
    """Mint anew on next use (tests)."""
    with _lock:
        _remembered.clear()
