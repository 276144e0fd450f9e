"""What one check does to a server's health: the state machine, and the
changes that deserve an alert. Pure logic on a ServerHealth row (no query)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings

from integrations.connectivity.probe import TLS_WARNING_DAYS, ProbeResult
from integrations.models import CheckOutcome, ServerHealth

State = ServerHealth.State


@dataclass(frozen=True)
class Change:
    """Something staff are told about: ``kind`` is ``failing`` (the server
    entered the failing state), ``recovered`` (failing → ok) or ``tls`` (the
    certificate expires within ``tls_days`` days)."""

    kind: str
    health: ServerHealth
    before: str
    outcome: str
    finding: str
    tls_days: int = 0


def interval() -> timedelta:
    return timedelta(minutes=settings.MONITOR_INTERVAL_MINUTES)


def confirm_after() -> timedelta:
    """A failed check of a server not yet failing is repeated this soon, so a
    broken server is failing (and alerted on) well within two intervals."""
    return max(interval() / 4, timedelta(seconds=settings.MONITOR_TICK_SECONDS))


def tls_stage(expires: datetime, now: datetime) -> int:
    """The tightest of TLS_WARNING_DAYS the expiry is within (0: none)."""
    left = expires - now
    return min((d for d in TLS_WARNING_DAYS if left < timedelta(days=d)), default=0)


def first_problem(result: ProbeResult) -> str:
    """The finding that explains the outcome, in plain words."""
    for finding in result.findings:
        if finding.outcome == result.outcome and finding.outcome != CheckOutcome.OK:
            return finding.message
    return result.findings[0].message if result.findings else ""


def _enter(health: ServerHealth, state: str, now: datetime) -> None:
    if health.state != state:
        health.state = state
        health.since = now


def apply_check(
    health: ServerHealth, result: ProbeResult, now: datetime, seconds: float
) -> list[Change]:
    """Record one check's result on ``health``; the alerts it calls for."""
    before = health.state
    outcome = result.outcome
    health.last_checked_at = now
    health.outcome = outcome
    health.last_check_seconds = round(seconds, 4)
    changes: list[Change] = []
    if outcome == CheckOutcome.BLOCKED:
        # The SSRF guard refuses the address (private, loopback...): out of
        # the registry's reach, never alerted on.
        health.consecutive_failures = 0
        _enter(health, State.UNMONITORED, now)
        return changes
    if outcome == CheckOutcome.OK:
        health.consecutive_failures = 0
        health.last_ok_at = now
        _enter(health, State.OK, now)
        if before == State.FAILING:
            changes.append(Change("recovered", health, before, outcome, ""))
    else:
        health.consecutive_failures += 1
        if before != State.FAILING:
            if health.consecutive_failures >= settings.MONITOR_FAILING_AFTER:
                _enter(health, State.FAILING, now)
                changes.append(
                    Change("failing", health, before, outcome, first_problem(result))
                )
            else:
                soon = now + confirm_after()
                if health.next_check_at is None or soon < health.next_check_at:
                    health.next_check_at = soon
    if result.tls_expires_at is not None:
        health.tls_expires_at = result.tls_expires_at
        stage = tls_stage(result.tls_expires_at, now)
        if stage == 0:
            health.tls_alert_stage = 0  # renewed: warn again next time
        elif health.tls_alert_stage == 0 or stage < health.tls_alert_stage:
            health.tls_alert_stage = stage
            days = max((result.tls_expires_at - now).days, 0)
            changes.append(Change("tls", health, before, outcome, "", tls_days=days))
    return changes
