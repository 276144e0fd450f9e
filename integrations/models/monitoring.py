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
    # tls_expires_at is the earliest expiry seen: two certificates behind one
    # name (a load balancer mid-renewal) alternate from check to check, and
    # the longer-lived one replaces it only once every check for
    # MONITOR_TLS_WINDOW_HOURS saw a later expiry (states.note_certificate).
    # Since when checks have seen only later expiries, and the earliest of
    # them; empty while the earliest one is still seen.
    tls_later_since = models.DateTimeField(null=True, blank=True)
    tls_later_expires_at = models.DateTimeField(null=True, blank=True)
    # Flap damping (states.damp): when the last state changes happened
    # (ISO 8601, at most MONITOR_FLAP_CHANGES, within MONITOR_FLAP_WINDOW_HOURS),
    # and since when the server is flapping (its "flapping" notice went; change
    # emails wait until its state holds for MONITOR_FLAP_QUIET_INTERVALS).
    recent_changes = models.JSONField(default=list, blank=True)
    flapping_since = models.DateTimeField(null=True, blank=True)
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


class MonitoringAlert(models.Model):
    """An alert waiting to be mailed (or mailed). Checks write these in the
    transaction that records the state change, so a worker that dies before
    committing leaves neither (the next check finds the change again) and
    one that dies after leaves the alert for the dispatcher. The dispatcher
    (every tick) claims what is pending and mails it to staff as one message,
    a digest when there are several (monitoring/alerts.py)."""

    class Kind(models.TextChoices):
        FAILING = "failing", "Failing"
        RECOVERED = "recovered", "Recovered"
        FLAPPING = "flapping", "Flapping"
        SETTLED = "settled", "Settled"
        TLS = "tls", "TLS certificate expires soon"

    health = models.ForeignKey(
        ServerHealth, on_delete=models.CASCADE, related_name="alerts"
    )
    kind = models.CharField(max_length=16, choices=Kind.choices)
    # A snapshot at the check, so the mail says what was true then.
    state = models.CharField(max_length=16, blank=True)
    before = models.CharField(max_length=16, blank=True)
    outcome = models.CharField(max_length=32, blank=True)
    since = models.DateTimeField(null=True, blank=True)
    failures = models.PositiveIntegerField(default=0)
    # The finding in the registry's own words, and apart from it what the
    # archive itself sent (escaped, capped; quoted as such in the mail).
    finding = models.TextField(blank=True)
    archive_text = models.JSONField(default=list, blank=True)
    tls_days = models.PositiveSmallIntegerField(default=0)
    tls_expires_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(db_index=True)
    # Set when a dispatcher claims it (before mailing: a dispatcher that dies
    # then loses it rather than mailing it twice); cleared again when the
    # mail server refused, for the next tick.
    sent_at = models.DateTimeField(null=True, blank=True, db_index=True)
    attempts = models.PositiveSmallIntegerField(default=0)

    class Meta:
        ordering = ["pk"]

    def __str__(self) -> str:
        return f"{self.kind} of server {self.health_id} at {self.created_at}"
