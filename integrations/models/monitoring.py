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

    # The schedule: a server is due when next_check_at is empty or past. A
    # dispatcher claims it by moving next_check_at forward with a
    # compare-and-set UPDATE (integrations/monitoring/rounds.py).
    next_check_at = models.DateTimeField(null=True, blank=True, db_index=True)
    consecutive_failures = models.PositiveIntegerField(default=0)
    last_check_seconds = models.FloatField(
        null=True, blank=True, help_text="How long the last check took."
    )
    # The last TLS expiry warning sent (30, 14 or 7 days before); 0: none yet.
    tls_alert_stage = models.PositiveSmallIntegerField(default=0)
    # Set by staff (the only fields a person edits here).
    out_of_reach = models.BooleanField(
        "inside a hospital network",
        default=False,
        help_text="The registry cannot reach this archive: it is not checked "
        "on a schedule (unmonitored); use the check from your own browser.",
    )
    alert_contact = models.BooleanField(
        "alert the institution's contact too",
        default=False,
        help_text="State changes are emailed to the institution's contact as "
        "well, when that address was confirmed through onboarding.",
    )

    class Meta:
        verbose_name = "server health"
        verbose_name_plural = "server health"

    def __str__(self) -> str:
        return f"{self.server}: {self.state}"
