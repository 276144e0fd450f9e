"""API keys: named credentials for programs."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone

# What each scope lets a key do, as the model permissions a staffer would need
# to do the same by hand. ``manage`` is every management endpoint of the API
# (tests/test_api_key_grants.py derives them from the API's views, so a new
# endpoint cannot slip past); ``access`` is the access question, which a staff
# session may ask with view on approved users.
_REGISTRY_MODELS = ("institution", "dicomwebserver", "approveduser")
SCOPE_PERMISSIONS: dict[str, tuple[str, ...]] = {
    "access": ("integrations.view_approveduser",),
    "manage": (
        *(
            f"integrations.{action}_{model}"
            for model in _REGISTRY_MODELS
            for action in ("view", "add", "change", "delete")
        ),
        "integrations.view_connectivitycheck",
        "integrations.add_connectivitycheck",
        # POST /api/v1/servers/{id}/access-review mails the contact.
        "integrations.add_accessreview",
    ),
}
_SCOPE_RANK = {"access": 1, "manage": 2}


class ApiKeyManager(models.Manager["ApiKey"]):
    def create_key(
        self,
        name: str,
        scope: str,
        expires_at: Any = None,
        created_by: Any = None,
    ) -> tuple[ApiKey, str]:
        """A new key and its raw value: the only time the raw value exists.

        ``created_by`` (a staff user) must hold every permission the scope
        grants; None is an operator at the shell, who is trusted."""
        if created_by is not None:
            ApiKey.check_may_grant(created_by, scope)
        key = self.model(
            name=name, scope=scope, expires_at=expires_at, created_by=created_by
        )
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
        # Admin help texts are HTML: no angle brackets, or "<name>" vanishes.
        help_text="Who uses it, e.g. uploader-production. The audit history names "
        "changes made with the key as “api-key:” followed by this name, with "
        "the staffer who created the key.",
    )
    # The least privilege unless someone picks more.
    scope = models.CharField(max_length=16, choices=Scope.choices, default="access")
    prefix = models.CharField(max_length=16, unique=True, editable=False)
    hashed_key = models.CharField(max_length=64, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(
        null=True, blank=True, help_text="Empty: never expires."
    )
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    # The staffer answerable for the key: named beside it in the history of
    # every change made with it. Null for keys made at the shell.
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        editable=False,
        on_delete=models.SET_NULL,
        related_name="+",
    )

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
        """``api-key:<name>``, and the staffer who made it when one did
        (within the history's 200 characters)."""
        label = f"api-key:{self.name}"
        if self.created_by is not None:
            label += f" (created by {self.created_by.get_username()})"
        return label[:200]

    @staticmethod
    def missing_permissions(user: Any, scope: str) -> list[str]:
        """The permissions ``scope`` grants that ``user`` lacks (none for an
        active superuser)."""
        wanted = SCOPE_PERMISSIONS.get(scope, ())
        return [perm for perm in wanted if not user.has_perm(perm)]

    @staticmethod
    def check_may_grant(user: Any, scope: str) -> None:
        """Refuse a key of ``scope`` to a staffer who could not do by hand
        what the key could: a key is never a way around a permission."""
        missing = ApiKey.missing_permissions(user, scope)
        if missing:
            raise ValidationError(
                f"A key of scope “{scope}” can do what needs the permission(s) "
                f"{', '.join(missing)}, which {user.get_username()} does not have.",
                code="scope_not_granted",
            )

    @staticmethod
    def raises_scope(old: str | None, new: str) -> bool:
        """True when going from ``old`` (None: a new key) to ``new`` gives a
        key more power."""
        return old is None or _SCOPE_RANK.get(new, 0) > _SCOPE_RANK.get(old, 0)

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
