"""Edge tokens: minted for the access answer, one per (user, enforced server).

A token is a JWT signed with the registry's current key (ES256, ``kid`` in
its header): ``iss`` the registry's public origin, ``sub`` the normalised
email, ``aud`` ``pacsbin-edge:<server id>``, ``iat``, ``exp``, ``jti``.
Signing costs more than the access query, so each worker reuses a token until
less than half its life is left: the answer (and its ETag) then stays the
same between two questions, and a 304 still means "nothing changed".
"""

from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime

import jwt
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


def mint(email: str, server_id: int, key: keys.SigningKey, now: int) -> Token:
    lifetime = settings.EDGE_TOKEN_LIFETIME
    claims = {
        "iss": issuer(),
        "sub": email,
        "aud": audience(server_id),
        "iat": now,
        "exp": now + lifetime,
        "jti": secrets.token_urlsafe(12),
    }
    value = jwt.encode(
        claims, key.private_key, algorithm=keys.ALGORITHM, headers={"kid": key.kid}
    )
    return Token(value, now + lifetime)


_remembered: dict[tuple[str, int, str, str, int], Token] = {}
_lock = threading.Lock()


def token_for(email: str, server_id: int) -> Token:
    """A token for (email, server): a remembered one while more than half its
    life is left, else a new one."""
    key = keys.current()
    lifetime = settings.EDGE_TOKEN_LIFETIME
    slot = (email, server_id, key.kid, issuer(), lifetime)
    now = int(time.time())
    found = _remembered.get(slot)
    if found is not None and found.expires - now > lifetime / 2:
        return found
    token = mint(email, server_id, key, now)
    with _lock:
        if len(_remembered) >= MAX_REMEMBERED:
            _remembered.clear()
        _remembered[slot] = token
    return token


def forget() -> None:
    """Mint anew on next use (tests)."""
    with _lock:
        _remembered.clear()
