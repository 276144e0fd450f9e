"""What monitoring knows of each server: its state, when it changed, the last
check's outcome, the TLS certificate's expiry and the capabilities learnt from
the archive. One row per server, written by the monitoring rounds, never by a
person (so the server's own audit history is not filled by every round)."""

from __future__ import annotations

from django.db import models

from integrations.models.connectivity import CheckOutcome
from integrations.models.registry import DicomWebServer


class ServerHealth(models.Model):
    class State(models.TextChoices):
        """Monitoring states (DESIGN.md "Monitoring" contract names)."""

        OK = "ok", "OK"
        FAILING = "failing", "Failing"
        UNKNOWN = "unknown", "Unknown (never checked)"
        UNMONITORED = "unmonitored", "Unmonitored (out of the registry's reach)"

    server = models.OneToOneField(
        DicomWebServer,
        on_delete=models.CASCADE,
        primary_key=True,
        related_name="health",
    )
    state = models.CharField(
        max_length=16, choices=State.choices, default=State.UNKNOWN
    )
    since = models.DateTimeField(
        null=True, blank=True, help_text="When the server entered its state."
    )
    last_checked_at = models.DateTimeField(null=True, blank=True)
    last_ok_at = models.DateTimeField(null=True, blank=True)
    outcome = models.CharField(max_length=32, choices=CheckOutcome.choices, blank=True)
    tls_expires_at = models.DateTimeField(null=True, blank=True)
    # What the archive does, learnt by a successful check (see
    # connectivity/capabilities.py); {} until learnt.
    capabilities = models.JSONField(default=dict, blank=True)
    capabilities_learnt_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "server health"
        verbose_name_plural = "server health"

    def __str__(self) -> str:
        return f"{self.server}: {self.state}"
