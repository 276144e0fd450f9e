"""Shared helpers of the API tests: keys, tokens and registry rows."""

from __future__ import annotations

import time
import uuid
from typing import Any
from unittest import mock

import jwt
from django.core.cache.backends.locmem import LocMemCache
from django.test import SimpleTestCase

from integrations import registry
from integrations.models import ApiKey, DicomWebServer, Institution

JWT_SECRET = "test-uploader-secret-0123456789abcdef0123456789"


def api_key(name: str, scope: str = "access", **kwargs: Any) -> tuple[ApiKey, str]:
    return ApiKey.objects.create_key(name, scope, **kwargs)


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


def server(
    institution: Institution,
    name: str,
    status: str = DicomWebServer.Status.ACTIVE,
    emails: list[str] | None = None,
) -> DicomWebServer:
    slug = name.lower().replace(" ", "-")
    row = DicomWebServer.objects.create(
        institution=institution,
        name=name,
        qido_url=f"https://{slug}.example/dicomweb",
        wado_url=f"https://{slug}.example/wado",
        status=status,
    )
    if emails:
        registry.add_approved_users(row, emails)
    return row


def fresh_throttle_cache(test: SimpleTestCase) -> LocMemCache:
    """Give the access throttle an empty cache of its own for one test (never
    clearing a shared cache that could be a real Redis)."""
    from integrations.api.throttling import AccessThrottle

    cache = LocMemCache(f"throttle-test-{uuid.uuid4().hex}", {})
    patcher = mock.patch.object(AccessThrottle, "cache", cache)
    patcher.start()
    test.addCleanup(patcher.stop)
    return cache
