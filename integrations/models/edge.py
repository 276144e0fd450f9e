"""The gate's rows: the registry's token signing keys and the edges' daily use."""

from __future__ import annotations

from django.db import models
from django.db.models import Q

from integrations.models.registry import DicomWebServer
from integrations.validators import MAX_EMAIL_LENGTH

ONE_CURRENT_SIGNING_KEY = "edge_signing_key_one_current"
USAGE_ONCE_PER_DAY = "edge_usage_once_per_server_email_day"


class EdgeSigningKey(models.Model):
    """A key that signs (or signed) the edge tokens of the access answer.

    The embedded default keeps its private key here, made on first use (never
    in the repository). A key from the environment (EDGE_SIGNING_KEY) keeps
    only its public half, so the JWKS still publishes it after the operator
    replaces it. Retired keys stay published until their last token expired.
    """

    kid = models.CharField(max_length=64, unique=True)
    # PEM (PKCS#8); empty for a key read from the environment.
    private_pem = models.TextField(blank=True)
    public_jwk = models.JSONField()
    # Constant: with the partial unique constraint, at most one current key,
    # even when two workers make the first one at the same moment.
    purpose = models.CharField(max_length=16, default="edge", editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    retired_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "edge signing key"
        ordering = ["-created_at", "-pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["purpose"],
                condition=Q(retired_at__isnull=True),
                name=ONE_CURRENT_SIGNING_KEY,
            )
        ]

    def __str__(self) -> str:
        return self.kid


class EdgeUsage(models.Model):
    """The gate's decisions for one (server, email, day): granted and refused
    counts, and the last granted one. Written in batches (edge/usage.py), never
    once per request. ``email`` is the token's normalised ``sub``; empty for
    refusals of requests that carried no valid token."""

    server = models.ForeignKey(
        DicomWebServer, on_delete=models.CASCADE, related_name="edge_usage"
    )
    email = models.CharField(max_length=MAX_EMAIL_LENGTH, blank=True)
    day = models.DateField()
    granted = models.PositiveIntegerField(default=0)
    refused = models.PositiveIntegerField(default=0)
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "edge usage"
        verbose_name_plural = "edge usage"
        ordering = ["-day", "email"]
        constraints = [
            models.UniqueConstraint(
                fields=["server", "email", "day"], name=USAGE_ONCE_PER_DAY
            )
        ]
        # The audit export reads use oldest first and pages by (day, id).
        indexes = [models.Index(fields=["day", "id"], name="edge_usage_day_idx")]

    def __str__(self) -> str:
        return f"{self.server_id} {self.email or '(no token)'} {self.day}"
