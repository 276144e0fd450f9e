"""Throttling of the access question, per API key, shared by every worker."""

from __future__ import annotations

import hashlib
import time
from typing import Any

from django.conf import settings
from django.core.cache import cache as default_cache
from rest_framework import throttling
from rest_framework.request import Request

from integrations import ratelimit
from integrations.api.auth import ApiClient, UploaderUser


class AccessThrottle(throttling.BaseThrottle):
    """ACCESS_THROTTLE_RATE requests per caller and fixed window.

    A counter incremented atomically in the shared cache (Redis in
    production, ``ratelimit.count``), so several workers share one count and
    none is lost to a race, unlike DRF's read-modify-write history list.
    Callers: an API key, a Bearer token's email, a staff user.
    """

    cache = default_cache

    def __init__(self) -> None:
        self.retry_after: int | None = None

    def allow_request(self, request: Request, view: Any) -> bool:
        return self.allow(self.caller(request))

    def allow(self, caller: str) -> bool:
        """Count one question of ``caller`` (see ``caller_of``)."""
        rate = settings.ACCESS_THROTTLE_RATE
        if rate is None:
            return True
        limit, period = rate
        now = time.time()
        window = int(now // period)
        key = f"throttle:access:{caller}:{period}:{window}"
        if ratelimit.count(self.cache, key, timeout=period + 1) <= limit:
            return True
        self.retry_after = max(1, int((window + 1) * period - now + 0.999))
        return False

    def wait(self) -> int | None:
        return self.retry_after

    @staticmethod
    def caller(request: Request) -> str:
        return AccessThrottle.caller_of(request.user)

    @staticmethod
    def caller_of(user: Any) -> str:
        if isinstance(user, ApiClient):
            return f"key:{user.key.pk}"
        if isinstance(user, UploaderUser):
            # Hashed: an email is no safe cache key (length, characters).
            digest = hashlib.sha256(user.email.casefold().encode()).hexdigest()
            return f"email:{digest[:32]}"
        return f"user:{user.pk}"
