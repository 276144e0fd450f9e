"""The verify endpoint's judgement: may this request through this edge?

In order: the edge key (403 when it does not name a server with that key),
the browser's token checked offline with the published keys (401 when
missing, malformed, badly signed, of another issuer or expired with more than
one second of leeway; 403 when it is for another server), then "the server is
active and the email still approved (not expired)" (403 otherwise).

Hot path: no query when warm. Tokens already verified are remembered per
worker until they expire; the server's state and each (server, email)
approval come from the shared cache in one round trip. Each entry carries the
server's generation; ``invalidate(server_id)``, called after every write that
touches the server or its approvals, gives the server a new generation, so
the next decision reads the database again: revocation is immediate at the
registry (EDGE_CACHE_SECONDS at the edge).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Any

import jwt
from django.conf import settings
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.db import transaction

from integrations.edge import edgekeys, keys, tokens
from integrations.models import ApprovedUser, DicomWebServer
from integrations.validators import email_key

# A token longer than this is refused unread (a header of any size never
# reaches the JWT parser).
MAX_TOKEN_LENGTH = 4096
LEEWAY_SECONDS = 1
log = logging.getLogger(__name__)
REQUIRED_CLAIMS = ["iss", "sub", "aud", "iat", "exp", "jti"]
# Verified tokens remembered per worker before the memory is emptied.
MAX_REMEMBERED = 100_000
# How long cached server states and approvals live in a shared cache (a new
# generation replaces them before that), and in a per-process cache
# (LocMemCache: another worker's write cannot reach this worker's cache, so
# its entries must be short-lived: a revocation reaches every worker within
# this, on top of the edge's EDGE_CACHE_SECONDS).
SHARED_CACHE_SECONDS = 300
LOCAL_CACHE_SECONDS = 5


@dataclass(frozen=True)
class Decision:
    status: int  # 204, 401 or 403
    reason: str
    server_id: int | None = None
    email: str = ""  # the token's sub, when its signature checked out

    @property
    def granted(self) -> bool:
        return self.status == 204


class _Refusal(Exception):
    def __init__(self, status: int, reason: str, email: str = "") -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.email = email


def decide(edge_key: str, authorization: str) -> Decision:
    server_id = edgekeys.server_id_of(edge_key)
    if server_id is None:
        return Decision(403, "The edge key is missing or malformed.")
    gen_key, state_key = _generation_key(server_id), _state_key(server_id)
    known: dict[str, Any] = {}
    if not _remembered(authorization):
        # A token never seen costs a signature check (~200 µs of CPU): only
        # for a caller holding this server's edge key, so anyone who reaches
        # this public endpoint without one is refused for the price of a hash.
        known = _cache_get_many([gen_key, state_key])
        if not _key_matches(_state(server_id, known), edge_key):
            return Decision(403, "The edge key is not this server's.")
    try:
        claims = _claims(authorization)
        email = claims["sub"]
        if claims["aud"] != tokens.audience(server_id):
            raise _Refusal(403, "The token is for another server.", email)
    except _Refusal as refusal:
        found = _cache_get_many([gen_key, state_key])
        state = _state(server_id, found)
        if not _key_matches(state, edge_key):
            return Decision(403, "The edge key is not this server's.")
        return Decision(refusal.status, refusal.reason, server_id, refusal.email)
    approval_key = _approval_key(server_id, email)
    if known:
        found = {**known, **_cache_get_many([approval_key])}
    else:
        found = _cache_get_many([gen_key, state_key, approval_key])
    state = _state(server_id, found)
    if not _key_matches(state, edge_key):
        return Decision(403, "The edge key is not this server's.")
    if not state["active"]:
        return Decision(403, "The server is not active.", server_id, email)
    if not _approved(server_id, email, state["generation"], found):
        return Decision(
            403, "The email is not (or no longer) approved.", server_id, email
        )
    return Decision(204, "", server_id, email)


def _key_matches(state: dict[str, Any], raw: str) -> bool:
    stored = state["key_hash"]
    # Compared even without a stored key, so timing says nothing either way.
    same = hmac.compare_digest(edgekeys.hashed(raw), stored or "-" * 64)
    return bool(stored) and same


# --- The token ------------------------------------------------------------------

_verified: dict[str, dict[str, Any]] = {}
_lock = threading.Lock()


def _bearer(authorization: str) -> str:
    return authorization.strip().partition(" ")[2].strip()


def _remembered(authorization: str) -> bool:
    """Whether this worker has already checked the token's signature."""
    return _bearer(authorization) in _verified


def _claims(authorization: str) -> dict[str, Any]:
    """The token's claims, checked (signature, alg, iss, exp); aud is the
    caller's to compare. _Refusal(401) for anything else."""
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if not scheme:
        raise _Refusal(401, "No token: send Authorization: Bearer <token>.")
    if scheme.lower() != "bearer" or not token:
        raise _Refusal(401, "The Authorization header is not a Bearer token.")
    if len(token) > MAX_TOKEN_LENGTH:
        raise _Refusal(401, "The token is malformed (too long).")
    claims = _verified.get(token)
    if claims is None:
        claims = _verify_signature(token)
        with _lock:
            if len(_verified) >= MAX_REMEMBERED:
                _verified.clear()
            _verified[token] = claims
    if claims["iss"] != tokens.issuer():
        raise _Refusal(401, "The token is from another issuer.")
    if claims["exp"] + LEEWAY_SECONDS < time.time():
        raise _Refusal(401, "The token has expired.")
    return claims


def _verify_signature(token: str) -> dict[str, Any]:
    try:
        header = jwt.get_unverified_header(token)
        kid = header.get("kid")
        if header.get("alg") != keys.ALGORITHM or not isinstance(kid, str):
            raise _Refusal(401, "The token is not signed by the registry (ES256).")
        public = keys.public_key(kid)
        if public is None:
            raise _Refusal(401, "The token's key is unknown (or retired).")
        claims: dict[str, Any] = jwt.decode(
            token,
            public,
            algorithms=[keys.ALGORITHM],
            # Checked by the caller on every use (the claims are remembered).
            options={
                "require": REQUIRED_CLAIMS,
                "verify_aud": False,
                "verify_exp": False,
                "verify_iss": False,
            },
            leeway=LEEWAY_SECONDS,
        )
    except _Refusal:
        raise
    except (jwt.PyJWTError, ValueError, TypeError, KeyError, AttributeError):
        raise _Refusal(
            401, "The token is malformed or its signature is wrong."
        ) from None
    if not all(isinstance(claims.get(name), str) for name in ("iss", "sub", "aud")):
        raise _Refusal(401, "The token's claims are malformed.")
    try:
        email_key(claims["sub"])
    except ValidationError:
        raise _Refusal(401, "The token's subject is not an email.") from None
    if not isinstance(claims.get("exp"), int | float):
        raise _Refusal(401, "The token's claims are malformed.")
    return claims


# --- The server and the approval, from the cache ------------------------------------


# The cache keys' prefix, the same in every worker (tests change it, so no
# test sees another's entries).
_namespace = "edge"


def _generation_key(server_id: int) -> str:
    return f"{_namespace}:gen:{server_id}"


def _state_key(server_id: int) -> str:
    return f"{_namespace}:server:{server_id}"


def _approval_key(server_id: int, email: str) -> str:
    # Hashed: an email may hold anything a cache key must not.
    digest = hashlib.sha256(email_key_or_raw(email).encode()).hexdigest()[:32]
    return f"{_namespace}:approval:{server_id}:{digest}"


def email_key_or_raw(email: str) -> str:
    try:
        return email_key(email)
    except ValidationError:  # never for a verified token (_verify_signature)
        return email


def _entry_seconds() -> int:
    backend = settings.CACHES["default"]["BACKEND"]
    return (
        LOCAL_CACHE_SECONDS
        if backend.endswith("LocMemCache")
        else (SHARED_CACHE_SECONDS)
    )


# The cache down (a Redis restarting) must not turn decisions into 500s: they
# are then read from the database, as on a cold cache.
def _cache_get_many(names: list[str]) -> dict[str, Any]:
    try:
        return cache.get_many(names)
    except Exception:
        log.warning("Edge decisions: the cache is unreachable.")
        return {}


def _cache_set(name: str, value: Any) -> None:
    try:
        cache.set(name, value, _entry_seconds())
    except Exception:
        log.warning("Edge decisions: the cache is unreachable.")


def _current_generation(server_id: int, found: dict[str, Any]) -> str:
    generation = found.get(_generation_key(server_id))
    if generation is None:
        # Never set, or evicted: a fresh one, so no older entry can match.
        fresh = secrets.token_hex(8)
        try:
            cache.add(_generation_key(server_id), fresh, None)
            generation = cache.get(_generation_key(server_id), fresh)
        except Exception:  # the cache is down: nothing cached matches
            log.warning("Edge decisions: the cache is unreachable.")
            generation = fresh
    return str(generation)


def _state(server_id: int, found: dict[str, Any]) -> dict[str, Any]:
    generation = _current_generation(server_id, found)
    state = found.get(_state_key(server_id))
    if state is not None and state.get("generation") == generation:
        return state
    row = (
        DicomWebServer.objects.filter(pk=server_id)
        .values("edge_key_hash", "status")
        .first()
    )
    state = {
        "generation": generation,
        "key_hash": row["edge_key_hash"] if row else "",
        "active": row is not None and row["status"] == DicomWebServer.Status.ACTIVE,
    }
    _cache_set(_state_key(server_id), state)
    return state


def _approved(
    server_id: int, email: str, generation: str, found: dict[str, Any]
) -> bool:
    entry = found.get(_approval_key(server_id, email))
    if entry is None or entry.get("generation") != generation:
        row = (
            ApprovedUser.objects.filter(
                server_id=server_id, email_key=email_key_or_raw(email)
            )
            .values("expires_at")
            .first()
        )
        entry = {
            "generation": generation,
            "approved": row is not None,
            "expires": row["expires_at"].timestamp()
            if row and row["expires_at"]
            else None,
        }
        _cache_set(_approval_key(server_id, email), entry)
    if not entry["approved"]:
        return False
    return entry["expires"] is None or entry["expires"] > time.time()


# --- Invalidation -----------------------------------------------------------------


def invalidate(server_id: int) -> None:
    """A new generation for the server now, and again once the current
    transaction commits (a decision made in between would read the old rows
    into the first one). Call after every write to the server or its
    approvals."""
    _new_generation(server_id)
    transaction.on_commit(lambda: _new_generation(server_id))


def _new_generation(server_id: int) -> None:
    try:
        cache.set(_generation_key(server_id), secrets.token_hex(8), None)
    except Exception:
        # A write must not fail for it; entries expire within their lifetime.
        log.warning("Edge decisions: the cache is unreachable; not invalidated.")


def forget(*, fresh_cache: bool = False) -> None:
    """Verify every token anew and, with ``fresh_cache``, ignore every cached
    server state and approval (tests: a rolled-back database reuses ids)."""
    global _namespace
    with _lock:
        _verified.clear()
    if fresh_cache:
        _namespace = f"edge-{secrets.token_hex(6)}"


def on_change(sender: Any, instance: Any, **kwargs: Any) -> None:
    """post_save / post_delete of a server or an approval (apps.py)."""
    server_id = instance.pk if isinstance(instance, DicomWebServer) else None
    if isinstance(instance, ApprovedUser):
        server_id = instance.server_id
    if server_id is not None:
        invalidate(server_id)
