"""System checks for misconfiguration, with stable ids."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import Error, Warning, register


@register()
def check_uploader_settings(app_configs: Any = None, **kwargs: Any) -> list[Any]:
    problems: list[Any] = []
    if not settings.DEBUG and not settings.UPLOADER_ORIGINS:
        problems.append(
            Error(
                "UPLOADER_ORIGINS is empty: no browser may call the access API.",
                hint="Set UPLOADER_ORIGINS=https://pacsbin.com (comma-separated).",
                id="integrations.E001",
            )
        )
    plain_http = any(o.startswith("http://") for o in settings.UPLOADER_ORIGINS)
    if plain_http and not settings.DEBUG:
        problems.append(
            Warning(
                "UPLOADER_ORIGINS contains a plain http:// origin.",
                hint="The uploader is served over HTTPS; list https:// origins.",
                id="integrations.W001",
            )
        )
    secret = settings.UPLOADER_JWT_SECRET
    if secret and len(secret) < 32:
        problems.append(
            Error(
                "UPLOADER_JWT_SECRET is shorter than 32 characters.",
                hint="HS256 needs a long random secret shared with the uploader.",
                id="integrations.E002",
            )
        )
    return problems


@register()
def check_onboarding_settings(app_configs: Any = None, **kwargs: Any) -> list[Any]:
    from django.core.exceptions import ValidationError

    from integrations.validators import normalize_email

    problems: list[Any] = []
    for address in settings.ONBOARDING_NOTIFY_EMAILS:
        try:
            normalize_email(address)
        except ValidationError as exc:
            problems.append(
                Error(
                    f"ONBOARDING_NOTIFY_EMAILS: {exc.messages[0]}",
                    hint="A comma-separated list of staff email addresses.",
                    id="integrations.E010",
                )
            )
    return problems
