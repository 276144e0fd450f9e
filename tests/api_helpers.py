"""Shared helpers of the API tests: keys, tokens and registry rows."""

from __future__ import annotations

import time
import uuid
from typing import Any
from unittest import mock

import jwt
from django.core.cache.backends.locmem import LocMemCache
from django.test import SimpleTestCase

JWT_SECRET = "test-uploader-secret-0123456789abcdef0123456789"


def key_header(raw: str) -> dict[str, str]:
    return {"HTTP_AUTHORIZATION": f"Api-Key {raw}"}


def user_token(email: str, secret: str = JWT_SECRET, **claims: Any) -> str:
    payload: dict[str, Any] = {
        "email": email,
        "aud": "pacsbin-integrations",
        "iat": int(time.time()),
        "exp": int(time.time()) + 300,
    }
    payload.update(claims)
    payload = {name: value for name, value in payload.items() if value is not None}
    return jwt.encode(payload, secret, algorithm="HS256")


def bearer_header(token: str) -> dict[str, str]:
    return {"HTTP_AUTHORIZATION": f"Bearer {token}"}


def fresh_throttle_cache(test: SimpleTestCase) -> LocMemCache:
    """Give the access throttle an empty cache of its own for one test (never
    clearing a shared cache that could be a real Redis)."""
    from integrations.api.throttling import AccessThrottle

    cache = LocMemCache(f"throttle-test-{uuid.uuid4().hex}", {})
    patcher = mock.patch.object(AccessThrottle, "cache", cache)
    patcher.start()
    test.addCleanup(patcher.stop)
    return cache
