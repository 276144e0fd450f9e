"""What one check does to a server's health: the state machine, and the
changes that deserve an alert. Pure logic on a ServerHealth row (no query)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings

from integrations.connectivity.probe import TLS_WARNING_DAYS, Finding, ProbeResult
from integrations.models import CheckOutcome, ServerHealth

State = ServerHealth.State


@dataclass(frozen=True)
class Change:
    """Something staff are told about: ``kind`` is ``failing`` (the server
    entered the failing state), ``recovered`` (failing → ok), ``flapping``
    (too many of those within MONITOR_FLAP_WINDOW_HOURS: the last one said),
    ``settled`` (a flapping server's state held again) or ``tls`` (the
    certificate expires within ``tls_days`` days). ``finding`` is in the
    registry's own words; ``archive_text`` what the archive sent, quoted
    apart in the mail."""

    kind: str
    health: ServerHealth
    before: str
    outcome: str
    finding: str
    tls_days: int = 0
    archive_text: tuple[str, ...] = ()


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


def first_problem(result: ProbeResult) -> Finding | None:
    """The finding that explains the outcome."""
    for finding in result.findings:
        if finding.outcome == result.outcome and finding.outcome != CheckOutcome.OK:
            return finding
    return result.findings[0] if result.findings else None


def _change(
    kind: str, health: ServerHealth, before: str, result: ProbeResult
) -> Change:
    """A change of state; a failing one says what the check found."""
    found = first_problem(result) if health.state == State.FAILING else None
    return Change(
        kind,
        health,
        before,
        result.outcome,
        found.own_words() if found else "",
        archive_text=found.archive_text if found else (),
    )


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
        health.recent_changes = []
        health.flapping_since = None
        _enter(health, State.UNMONITORED, now)
        return changes
    if outcome == CheckOutcome.OK:
        health.consecutive_failures = 0
        health.last_ok_at = now
        _enter(health, State.OK, now)
        if before == State.FAILING:
            changes.append(_change("recovered", health, before, result))
    else:
        health.consecutive_failures += 1
        if before != State.FAILING:
            if health.consecutive_failures >= settings.MONITOR_FAILING_AFTER:
                _enter(health, State.FAILING, now)
                changes.append(_change("failing", health, before, result))
            else:
                soon = now + confirm_after()
                if health.next_check_at is None or soon < health.next_check_at:
                    health.next_check_at = soon
    changes = damp(health, changes, result, now)
    return changes + note_certificate(health, result.tls_expires_at, now, before)


def _times(values: object) -> list[datetime]:
    times = []
    for value in values if isinstance(values, list) else []:
        try:
            times.append(datetime.fromisoformat(str(value)))
        except ValueError:
            continue
    return times


def damp(
    health: ServerHealth, changes: list[Change], result: ProbeResult, now: datetime
) -> list[Change]:
    """Flap damping: the state changes of ``changes`` as they are mailed.

    The MONITOR_FLAP_CHANGES-th change within MONITOR_FLAP_WINDOW_HOURS is
    one "flapping" notice instead; after it no change is mailed until the
    state has held for MONITOR_FLAP_QUIET_INTERVALS intervals, then one
    "settled" email says where. A server that flaps for ever so costs
    MONITOR_FLAP_CHANGES emails, not one per check (about 150 a day)."""
    if changes:
        window = timedelta(hours=settings.MONITOR_FLAP_WINDOW_HOURS)
        recent = [t for t in _times(health.recent_changes) if now - t < window]
        recent = (recent + [now])[-settings.MONITOR_FLAP_CHANGES :]
        health.recent_changes = [t.isoformat() for t in recent]
        if health.flapping_since is not None:
            return []
        if len(recent) >= settings.MONITOR_FLAP_CHANGES:
            health.flapping_since = now
            return [_change("flapping", health, changes[0].before, result)]
        return changes
    quiet = interval() * settings.MONITOR_FLAP_QUIET_INTERVALS
    if (
        health.flapping_since is not None
        and health.since is not None
        and now - health.since >= quiet
    ):
        health.flapping_since = None
        health.recent_changes = []
        return [_change("settled", health, health.state, result)]
    return []


def note_certificate(
    health: ServerHealth, seen: datetime | None, now: datetime, before: str
) -> list[Change]:
    """Record the certificate expiry one check saw; the TLS warning it calls
    for, against the earliest expiry seen (``tls_expires_at``).

    Two certificates behind one name (a load balancer mid-renewal) alternate
    from check to check: an earlier expiry counts at once, a later one only
    once every check for MONITOR_TLS_WINDOW_HOURS saw a later one (then its
    own warnings are armed again). Without this the warning re-armed at every
    check that saw the renewed certificate and went again at the next."""
    if seen is None:
        return []
    current = health.tls_expires_at
    if current is None or seen <= current:
        health.tls_expires_at = seen
        health.tls_later_since = None
        health.tls_later_expires_at = None
    else:
        if health.tls_later_since is None or health.tls_later_expires_at is None:
            health.tls_later_since = now
            health.tls_later_expires_at = seen
        else:
            health.tls_later_expires_at = min(health.tls_later_expires_at, seen)
        window = timedelta(hours=settings.MONITOR_TLS_WINDOW_HOURS)
        if now - health.tls_later_since >= window:
            health.tls_expires_at = health.tls_later_expires_at
            health.tls_later_since = None
            health.tls_later_expires_at = None
            health.tls_alert_stage = 0  # renewed: its own warnings
    expires = health.tls_expires_at
    if expires is None:
        return []
    stage = tls_stage(expires, now)
    if stage == 0:
        health.tls_alert_stage = 0
    elif health.tls_alert_stage == 0 or stage < health.tls_alert_stage:
        health.tls_alert_stage = stage
        days = max((expires - now).days, 0)
        return [Change("tls", health, before, health.outcome, "", tls_days=days)]
    return []
