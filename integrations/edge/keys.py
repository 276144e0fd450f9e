"""The keys that sign edge tokens: the current one, rotation, the JWKS.

The embedded default is an EC P-256 key made on first use and kept in the
database (never in the repository); production may give it in
EDGE_SIGNING_KEY / EDGE_SIGNING_KEY_FILE. Every worker keeps the keys in
memory and reads them again every REFRESH_SECONDS, so the hot paths (the
access answer, the verify endpoint) run no query for them; a rotation
therefore reaches every worker within REFRESH_SECONDS, and a retired key stays
published for as long as a token it signed can live.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from integrations.models import EdgeSigningKey
from integrations.validators import load_signing_key

ALGORITHM = "ES256"
# How often a worker reads the keys again (a rotation made elsewhere reaches it).
REFRESH_SECONDS = 30.0
# An unknown kid in a token makes a worker read the keys again, at most this
# often (garbage kids cannot turn every request into a query).
UNKNOWN_KID_RELOAD_SECONDS = 1.0
# Clock differences between workers, on top of the token lifetime and the
# refresh, before a retired key leaves the JWKS.
RETENTION_SLACK = timedelta(seconds=60)


@dataclass(frozen=True)
class SigningKey:
    kid: str
    private_key: ec.EllipticCurvePrivateKey


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def public_jwk(public_key: ec.EllipticCurvePublicKey) -> dict[str, str]:
    """The key as a JWK (RFC 7517/7518), with its RFC 7638 thumbprint as kid."""
    numbers = public_key.public_numbers()
    members = {
        "crv": "P-256",
        "kty": "EC",
        "x": _b64(numbers.x.to_bytes(32, "big")),
        "y": _b64(numbers.y.to_bytes(32, "big")),
    }
    canonical = json.dumps(members, separators=(",", ":"), sort_keys=True)
    kid = _b64(hashlib.sha256(canonical.encode()).digest())
    return {**members, "kid": kid, "use": "sig", "alg": ALGORITHM}


def _pem(private_key: ec.EllipticCurvePrivateKey) -> str:
    return private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def retention() -> timedelta:
    """How long a retired key stays published: its last token's life."""
    return (
        timedelta(seconds=settings.EDGE_TOKEN_LIFETIME + REFRESH_SECONDS)
        + RETENTION_SLACK
    )


def published() -> Any:
    """The keys whose tokens may still be alive: the current one and those
    retired less than ``retention()`` ago."""
    since = timezone.now() - retention()
    return EdgeSigningKey.objects.filter(
        Q(retired_at__isnull=True) | Q(retired_at__gt=since)
    ).order_by("-created_at", "-pk")


# --- The current key ------------------------------------------------------------


def _current_from_database() -> SigningKey:
    """The current key: the environment's, else the embedded one (made now if
    there is none). Two workers making the first one at once: one wins the
    one-current-key constraint, the other reads its key."""
    for _attempt in range(3):
        try:
            with transaction.atomic():
                if settings.EDGE_SIGNING_KEY:
                    return _adopt_environment_key(settings.EDGE_SIGNING_KEY)
                row = EdgeSigningKey.objects.filter(retired_at__isnull=True).first()
                if row is None or not row.private_pem:
                    # None yet, or the last one came from an environment key
                    # that is gone: make the embedded default.
                    return _make_current(retire_current=row is not None)
                return SigningKey(row.kid, load_signing_key(row.private_pem))
        except IntegrityError:
            continue
    raise RuntimeError("Could not settle the current edge signing key.")


def _make_current(*, retire_current: bool) -> SigningKey:
    if retire_current:
        EdgeSigningKey.objects.filter(retired_at__isnull=True).update(
            retired_at=timezone.now()
        )
    private_key = ec.generate_private_key(ec.SECP256R1())
    jwk = public_jwk(private_key.public_key())
    EdgeSigningKey.objects.create(
        kid=jwk["kid"], private_pem=_pem(private_key), public_jwk=jwk
    )
    return SigningKey(jwk["kid"], private_key)


def _adopt_environment_key(pem: str) -> SigningKey:
    """The environment's key, its public half recorded (so it stays in the
    JWKS after the operator replaces it) and any other current key retired."""
    private_key = load_signing_key(pem)
    jwk = public_jwk(private_key.public_key())
    EdgeSigningKey.objects.filter(retired_at__isnull=True).exclude(
        kid=jwk["kid"]
    ).update(retired_at=timezone.now())
    row, created = EdgeSigningKey.objects.get_or_create(
        kid=jwk["kid"], defaults={"public_jwk": jwk}
    )
    if not created and row.retired_at is not None:
        row.retired_at = None
        row.save(update_fields=["retired_at"])
    return SigningKey(jwk["kid"], private_key)


def rotate() -> tuple[str, str | None]:
    """Replace the embedded key by a new one: answers (new kid, old kid). The
    old key stays published for ``retention()``. With EDGE_SIGNING_KEY set
    the operator rotates by replacing that key: refused here."""
    if settings.EDGE_SIGNING_KEY:
        raise ValueError(
            "EDGE_SIGNING_KEY is set: rotate by giving a new key there (the "
            "old one stays in the JWKS until its last token expires)."
        )
    with transaction.atomic():
        old = EdgeSigningKey.objects.select_for_update().filter(retired_at__isnull=True)
        old_kid = old.values_list("kid", flat=True).first()
        new = _make_current(retire_current=True)
    forget()
    return new.kid, old_kid


# --- What each worker keeps ------------------------------------------------------


class _Memory:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.current: SigningKey | None = None
        self.current_until = 0.0
        self.public: dict[str, ec.EllipticCurvePublicKey] = {}
        self.jwks: list[dict[str, Any]] = []
        self.public_until = 0.0
        self.last_unknown_reload = 0.0


_memory = _Memory()


def forget() -> None:
    """Read the keys again on next use (after a rotation, and in tests)."""
    with _memory.lock:
        _memory.current = None
        _memory.current_until = 0.0
        _memory.public = {}
        _memory.jwks = []
        _memory.public_until = 0.0
        _memory.last_unknown_reload = 0.0


def current() -> SigningKey:
    """The key that signs new tokens (no query while the worker's copy is fresh)."""
    now = time.monotonic()
    found = _memory.current
    if found is not None and now < _memory.current_until:
        return found
    found = _current_from_database()
    with _memory.lock:
        _memory.current = found
        _memory.current_until = now + REFRESH_SECONDS
    return found


def _load_public() -> None:
    current()  # so a fresh registry publishes the key it is about to use
    rows = list(published().values_list("public_jwk", flat=True))
    public: dict[str, ec.EllipticCurvePublicKey] = {}
    for jwk in rows:
        public[jwk["kid"]] = _public_key(jwk)
    with _memory.lock:
        _memory.public = public
        _memory.jwks = rows
        _memory.public_until = time.monotonic() + REFRESH_SECONDS


def _public_key(jwk: dict[str, str]) -> ec.EllipticCurvePublicKey:
    def number(text: str) -> int:
        return int.from_bytes(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))

    return ec.EllipticCurvePublicNumbers(
        number(jwk["x"]), number(jwk["y"]), ec.SECP256R1()
    ).public_key()


def public_key(kid: str) -> ec.EllipticCurvePublicKey | None:
    """The published key ``kid`` names, or None. No query while the worker's
    copy is fresh; an unknown kid reads the keys again at most once a second."""
    now = time.monotonic()
    if now >= _memory.public_until:
        _load_public()
    found = _memory.public.get(kid)
    if found is None and now - _memory.last_unknown_reload >= (
        UNKNOWN_KID_RELOAD_SECONDS
    ):
        _memory.last_unknown_reload = now
        _load_public()
        found = _memory.public.get(kid)
    return found


def jwks() -> dict[str, Any]:
    """The published keys as a JWK Set (RFC 7517)."""
    if time.monotonic() >= _memory.public_until:
        _load_public()
    return {"keys": list(_memory.jwks)}
