"""Connectivity checks: one probe of a server (or of an onboarding request's
details) from one origin, and what it found."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import models

from integrations import inputs
from integrations.models.registry import DicomWebServer


class CheckOutcome(models.TextChoices):
    """The outcome of a connectivity check (REST API v1 contract values)."""

    OK = "ok", "OK"
    UNREACHABLE = "unreachable", "Unreachable"
    TLS_ERROR = "tls_error", "TLS error"
    NOT_DICOMWEB = "not_dicomweb", "Not DICOMweb"
    CORS_MISSING = "cors_missing", "CORS header missing"
    CORS_ORIGIN_MISMATCH = "cors_origin_mismatch", "CORS for another origin"
    PREFLIGHT_FAILED = "preflight_failed", "Preflight failed"
    CREDENTIALS_MISCONFIGURED = "credentials_misconfigured", "Credentials misconfigured"
    BLOCKED = "blocked", "Blocked by the SSRF guard"


# What a stored finding may hold: archives answer anything, and the server-side
# probe quotes their headers and URLs in its messages.
MAX_STORED_FINDINGS = 50
MAX_STORED_CODE_LENGTH = 64
MAX_STORED_MESSAGE_LENGTH = 4000


def storable_findings(findings: Any) -> list[dict[str, str]]:
    """``findings`` as ``[{code, message}]`` that every database stores and
    every page shows: NUL, control characters and lone surrogates escaped,
    lengths capped. Used on the way in and, for rows stored before, on the
    way out."""
    if not isinstance(findings, list):
        return []
    storable = []
    for finding in findings[:MAX_STORED_FINDINGS]:
        if not isinstance(finding, dict):
            continue
        storable.append(
            {
                "code": inputs.escaped(finding.get("code", ""), MAX_STORED_CODE_LENGTH),
                "message": inputs.escaped(
                    finding.get("message", ""), MAX_STORED_MESSAGE_LENGTH
                ),
            }
        )
    return storable


class ConnectivityCheckManager(models.Manager["ConnectivityCheck"]):
    def record(self, **fields: Any) -> ConnectivityCheck:
        """Store a check, its findings and origin made storable first."""
        fields["findings"] = storable_findings(fields.get("findings", []))
        fields["origin"] = inputs.escaped(fields.get("origin", ""), 200)
        return self.create(**fields)


class ConnectivityCheck(models.Model):
    """One probe of a server from one origin, by the registry or a browser."""

    objects = ConnectivityCheckManager()

    class Source(models.TextChoices):
        SERVER = "server", "Server-side probe"
        BROWSER = "browser", "Someone's browser"

    # Server-side checks always have a server. A browser check from the status
    # page of a request not yet approved has only the request; approval then
    # attaches it to the server, so staff see what the contact's browser saw.
    # Both cascade: a check says something only about what it was made for.
    server = models.ForeignKey(
        DicomWebServer,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="connectivity_checks",
    )
    onboarding_request = models.ForeignKey(
        "OnboardingRequest",
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="connectivity_checks",
    )
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    source = models.CharField(max_length=16, choices=Source.choices)
    origin = models.CharField(max_length=200)
    outcome = models.CharField(max_length=32, choices=CheckOutcome.choices)
    findings = models.JSONField(default=list, blank=True)

    class Meta:
        verbose_name = "connectivity check"
        ordering = ["-created_at", "-pk"]
        indexes = [
            models.Index(
                fields=["server", "-created_at"], name="check_server_recent_idx"
            )
        ]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(server__isnull=False)
                | models.Q(onboarding_request__isnull=False),
                name="check_has_server_or_request",
                violation_error_message=(
                    "A connectivity check is made for a server or an onboarding "
                    "request."
                ),
            )
        ]

    def __str__(self) -> str:
        return f"{self.get_outcome_display()} from {self.origin} ({self.source})"

    @property
    def is_ok(self) -> bool:
        return self.outcome == CheckOutcome.OK

    @property
    def shown_findings(self) -> list[dict[str, str]]:
        """The findings, safe to render even if a stored row holds odd text."""
        return storable_findings(self.findings)

    @property
    def shown_origin(self) -> str:
        return inputs.escaped(self.origin)

    def to_dict(self) -> dict[str, Any]:
        """The REST API's shape of a check (contract)."""
        return {
            "id": self.pk,
            "created_at": self.created_at.isoformat().replace("+00:00", "Z"),
            "source": self.source,
            "origin": self.shown_origin,
            "outcome": self.outcome,
            "findings": self.shown_findings,
        }
