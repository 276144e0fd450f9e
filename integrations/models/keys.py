"""API keys: named credentials for programs."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import timedelta
from typing import Any

from django.db import models
from django.utils import timezone


class ApiKeyManager(models.Manager["ApiKey"]):
    def create_key(
        self, name: str, scope: str, expires_at: Any = None
    ) -> tuple[ApiKey, str]:
        """A new key and its raw value: the only time the raw value exists."""
        key = self.model(name=name, scope=scope, expires_at=expires_at)
        raw = key.set_new_key()
        key.full_clean()
        key.save()
        return key, raw

    def for_raw_key(self, raw: str) -> ApiKey | None:
        """The usable key (not revoked, not expired) for a raw value, or None.

        One indexed query by prefix; the hash is compared in constant time.
        """
        prefix, dot, _secret = raw.partition(".")
        if not dot or not prefix or len(raw) > 200:
            return None
        key = self.filter(prefix=prefix).first()
        if key is None or not hmac.compare_digest(key.hashed_key, ApiKey.hash(raw)):
            return None
        return key if key.is_usable() else None


class ApiKey(models.Model):
    """A named credential for a program. Only a hash of the key is stored."""

    class Scope(models.TextChoices):
        ACCESS = "access", "access: may ask the access question"
        MANAGE = "manage", "manage: may also change the registry"

    # How often last_used_at is written: not on every request (the access
    # question is the hot path), but often enough to spot unused keys.
    LAST_USED_RESOLUTION = timedelta(minutes=1)

    name = models.CharField(
        max_length=100,
        unique=True,
        help_text="Who uses it, e.g. uploader-production. Named in the audit "
        "history as api-key:<name>.",
    )
    scope = models.CharField(max_length=16, choices=Scope.choices)
    prefix = models.CharField(max_length=16, unique=True, editable=False)
    hashed_key = models.CharField(max_length=64, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(
        null=True, blank=True, help_text="Empty: never expires."
    )
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)

    objects = ApiKeyManager()

    class Meta:
        verbose_name = "API key"
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @staticmethod
    def hash(raw: str) -> str:
        # The key is 256 random bits: a fast hash cannot be brute-forced, and
        # a slow one would cost every API call.
        return hashlib.sha256(raw.encode()).hexdigest()

    def set_new_key(self) -> str:
        """Give this (unsaved) row a new key; answers the raw key, which is
        never stored: show it to the user once."""
        self.prefix = secrets.token_hex(6)
        raw = f"{self.prefix}.{secrets.token_urlsafe(32)}"
        self.hashed_key = ApiKey.hash(raw)
        return raw

    @property
    def audit_label(self) -> str:
        return f"api-key:{self.name}"

    def is_usable(self) -> bool:
        if self.revoked_at is not None:
            return False
        return self.expires_at is None or self.expires_at > timezone.now()

    def revoke(self) -> None:
        if self.revoked_at is None:
            self.revoked_at = timezone.now()
            self.save(update_fields=["revoked_at"])

    def record_use(self) -> None:
        """Note the time of use, at most once per LAST_USED_RESOLUTION."""
        now = timezone.now()
        if self.last_used_at and now - self.last_used_at < self.LAST_USED_RESOLUTION:
            return
        self.last_used_at = now
        ApiKey.objects.filter(pk=self.pk).update(last_used_at=now)
