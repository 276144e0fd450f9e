"""Shared helpers of the API tests: keys, tokens and registry rows."""

from __future__ import annotations

import time
from typing import Any

import jwt

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
