"""Who is calling: an API key, a signed user token, or (DRF's own) a session."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any, cast

import jwt
from django.conf import settings
from django.contrib.auth.models import AnonymousUser, User
from django.core.exceptions import ValidationError
from rest_framework import authentication, exceptions
from rest_framework.request import Request

from integrations.models import ApiKey
from integrations.validators import normalize_email

JWT_AUDIENCE = "pacsbin-integrations"
JWT_ALGORITHMS = ["HS256"]  # and nothing else: never "none", never RS/HS mix-ups
JWT_LEEWAY_SECONDS = 30  # clock skew between the uploader's backend and us
# How long a worker trusts a key it looked up: a key revoked in the database is
# refused by every worker within this many seconds (an expired one at once).
KEY_CACHE_SECONDS = 5.0
_KEY_CACHE_SIZE = 1000


@dataclass(frozen=True)
class ApiClient:
    """request.user for a call made with an API key (a program, not a person)."""

    key: ApiKey
    is_authenticated = True
    is_staff = False
    is_active = True

    def get_username(self) -> str:
        return self.key.audit_label


@dataclass(frozen=True)
class UploaderUser:
    """request.user for a call made with a signed user token: one email."""

    email: str
    is_authenticated = True
    is_staff = False
    is_active = True

    def get_username(self) -> str:
        return self.email


def request_user(
    request: Request,
) -> User | AnonymousUser | ApiClient | UploaderUser | None:
    """``request.user`` as DRF sets it: what authenticated the call (an API
    key's ApiClient, a token's UploaderUser, a session's User) or the
    anonymous user. The stubs know Django's users only."""
    return cast("User | AnonymousUser | ApiClient | UploaderUser | None", request.user)


def _credentials(request: Request, scheme: str) -> str | None:
    """The credentials after ``scheme`` in Authorization, or None for another
    scheme. A malformed header for this scheme is a 401."""
    header = request.META.get("HTTP_AUTHORIZATION", "")
    given_scheme, _, value = header.strip().partition(" ")
    if given_scheme.lower() != scheme.lower():
        return None
    value = value.strip()
    if not value or " " in value:
        raise exceptions.AuthenticationFailed(
            f"Malformed Authorization header: use '{scheme} <credentials>'."
        )
    return value


# This process's usable keys by hash of the raw key: (trusted until, key).
_usable_keys: dict[str, tuple[float, ApiKey]] = {}


def usable_key(raw: str) -> ApiKey | None:
    """``ApiKey.objects.for_raw_key(raw)``, remembered by this process for
    KEY_CACHE_SECONDS, so that the access question costs one SQL query, not
    two. Only usable keys are remembered: an unknown key is looked up every
    time, and a remembered one that expires meanwhile is refused at once."""
    digest = ApiKey.hash(raw)
    now = time.monotonic()
    remembered = _usable_keys.get(digest)
    if remembered is not None and now < remembered[0] and remembered[1].is_usable():
        return remembered[1]
    key = ApiKey.objects.for_raw_key(raw)
    if key is None:
        _usable_keys.pop(digest, None)
        return None
    if len(_usable_keys) >= _KEY_CACHE_SIZE:
        _usable_keys.clear()
    _usable_keys[digest] = (now + KEY_CACHE_SECONDS, key)
    return key


def forget_keys() -> None:
    """Forget every remembered key (tests start from the database)."""
    _usable_keys.clear()


# What create_api_key prints: a 12-hex-digit prefix, a dot, the secret.
_KEY_SHAPE = re.compile(r"[0-9a-f]{12}\.[A-Za-z0-9_-]{20,100}")


def _api_key(request: Request) -> str | None:
    """The API key the request sends, as developers send it: ``Authorization:
    Api-Key <key>``, ``X-Api-Key: <key>``, or the bare key in Authorization
    (what the API docs' Authorize box sends when the key is pasted alone)."""
    raw = _credentials(request, ApiKeyAuthentication.keyword)
    if raw is not None:
        return raw
    header = request.META.get("HTTP_X_API_KEY")
    if header is not None:
        value = header.strip()
        if not value or " " in value:
            raise exceptions.AuthenticationFailed(
                "Malformed X-Api-Key header: send the key alone."
            )
        return value
    bare = request.META.get("HTTP_AUTHORIZATION", "").strip()
    return bare if _KEY_SHAPE.fullmatch(bare) else None


def challenge(request: Request) -> str:
    """The WWW-Authenticate of a 401: the scheme the caller tried (a refused
    user token is told so, RFC 6750), else the one programs use."""
    sent = request.META.get("HTTP_AUTHORIZATION", "").strip()
    if sent.partition(" ")[0].lower() == UserTokenAuthentication.keyword.lower():
        return 'Bearer error="invalid_token"'
    return ApiKeyAuthentication.keyword


NOT_PROVIDED = (
    "No credentials: send an API key as 'Authorization: Api-Key <key>' (or "
    "'X-Api-Key: <key>'), or a user token as 'Authorization: Bearer <token>'."
)


class ApiKeyAuthentication(authentication.BaseAuthentication):
    """``Authorization: Api-Key <key>`` (or ``X-Api-Key``, or the bare key)."""

    keyword = "Api-Key"

    def authenticate(self, request: Request) -> tuple[ApiClient, ApiKey] | None:
        raw = _api_key(request)
        if raw is None:
            return None
        key = usable_key(raw)
        if key is None:
            # One message for unknown, revoked and expired keys: a caller
            # learns nothing about which keys exist.
            raise exceptions.AuthenticationFailed("Invalid, revoked or expired key.")
        key.record_use()
        return ApiClient(key), key

    def authenticate_header(self, request: Request) -> str:
        # DRF asks the first authentication class for every 401's challenge.
        return challenge(request)


class UserTokenAuthentication(authentication.BaseAuthentication):
    """``Authorization: Bearer <jwt>`` minted by the uploader's backend.

    HS256 with UPLOADER_JWT_SECRET; ``exp``, ``iat``, ``aud`` and ``email``
    required, and ``exp - iat`` at most UPLOADER_JWT_MAX_LIFETIME seconds.
    Off (every Bearer token refused) while the secret is unset.
    """

    keyword = "Bearer"

    def authenticate(self, request: Request) -> tuple[UploaderUser, Any] | None:
        token = _credentials(request, self.keyword)
        if token is None:
            return None
        secret = settings.UPLOADER_JWT_SECRET
        if not secret:
            raise exceptions.AuthenticationFailed(
                "Bearer tokens are not accepted by this registry."
            )
        try:
            claims = jwt.decode(
                token,
                secret,
                algorithms=JWT_ALGORITHMS,
                audience=JWT_AUDIENCE,
                leeway=JWT_LEEWAY_SECONDS,
                options={"require": ["exp", "iat", "aud", "email"]},
            )
        except jwt.ExpiredSignatureError:
            raise exceptions.AuthenticationFailed("The token has expired.") from None
        except jwt.InvalidTokenError as exc:
            raise exceptions.AuthenticationFailed(
                f"Invalid token: {str(exc).rstrip('.')}."
            ) from None
        except (ValueError, TypeError, OverflowError):
            # PyJWT checks its claims itself; should a future version let an
            # absurd number through to int(), it is still the caller's error.
            raise exceptions.AuthenticationFailed(
                "Invalid token: exp and iat must be whole numbers of seconds."
            ) from None
        _check_lifetime(claims)
        try:
            email = normalize_email(claims["email"])
        except ValidationError as exc:
            raise exceptions.AuthenticationFailed(
                f"Invalid token: {exc.messages[0]}"
            ) from None
        return UploaderUser(email), claims

    def authenticate_header(self, request: Request) -> str:
        return self.keyword


def _check_lifetime(claims: dict[str, Any]) -> None:
    """Refuse a token minted to live longer than UPLOADER_JWT_MAX_LIFETIME.

    A leaked long-lived token cannot be revoked (there is no token list to
    strike it from), so its lifetime is the only bound on the damage; a token
    "valid until the year 10^30" is refused here, not trusted.
    """
    limit = settings.UPLOADER_JWT_MAX_LIFETIME
    try:
        lifetime = int(claims["exp"]) - int(claims["iat"])
    except (ValueError, TypeError, OverflowError):
        raise exceptions.AuthenticationFailed(
            "Invalid token: exp and iat must be whole numbers of seconds."
        ) from None
    if lifetime > limit:
        raise exceptions.AuthenticationFailed(
            f"Invalid token: it lives longer than {limit} seconds (exp - iat); "
            "mint short-lived tokens."
        )
