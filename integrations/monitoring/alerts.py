"""Alert emails: a failing server, its recovery, a flapping server and where
it settled (states.damp), and each TLS warning stage, to MONITOR_ALERT_EMAILS
(default: active staff who may change servers) and, when the server opts in,
the institution's confirmed contact.

Checks ``queue`` their alerts as rows (MonitoringAlert) with the states they
record; the dispatcher ``flush``-es what is pending every tick, claiming the
rows first so that no two dispatchers mail one alert: staff get one message,
a digest when several servers changed in the round; a contact gets the
alerts of their own server.

Every value that came from a person is put on one line with ``one_line``;
what an archive sent is never mixed into the alert's own sentences: it comes
after them, quoted as the archive's, cut short, escaped (``inputs.quoted``).
Subjects hold no archive text."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.mail import EmailMessage, get_connection
from django.db import connection, transaction
from django.db.models import F
from django.urls import reverse
from django.utils import timezone

from integrations import inputs
from integrations.connectivity.probe import TLS_WARNING_DAYS
from integrations.models import (
    CheckOutcome,
    MonitoringAlert,
    OnboardingRequest,
    ServerHealth,
)
from integrations.publicurls import public_url
from integrations.validators import one_line

if TYPE_CHECKING:
    from integrations.monitoring.states import Change

logger = logging.getLogger(__name__)

SUBJECT_PREFIX = "[Pacsbin Integrations] "
# A server name in a subject (names are one line, but may be long).
SUBJECT_NAME_LIMIT = 80
# The finding in the registry's words, and how many of the archive's texts
# one alert quotes (each cut to inputs.QUOTE_LIMIT).
FINDING_LIMIT = 600
QUOTES_PER_ALERT = 3
# What a row keeps of the archive's text (escaped: PostgreSQL refuses NUL).
STORED_ARCHIVE_TEXT = 1000
# Alerts one dispatcher mails at once; a digest details this many, then
# counts the rest (the Server health page lists them all).
FLUSH_LIMIT = 5000
DIGEST_DETAILS = 100
# A mail server that refuses is tried again at the next ticks, this often.
MAX_ATTEMPTS = 5


def staff_recipients() -> list[str]:
    if settings.MONITOR_ALERT_EMAILS:
        return list(settings.MONITOR_ALERT_EMAILS)
    users = (
        get_user_model()
        .objects.with_perm(
            "integrations.change_dicomwebserver",
            is_active=True,
            include_superusers=True,
            backend="django.contrib.auth.backends.ModelBackend",
        )
        .filter(is_staff=True)
        .exclude(email="")
        .order_by("email")
        .values_list("email", flat=True)
    )
    return list(dict.fromkeys(users))


def confirmed_contact(health: ServerHealth) -> str | None:
    """The institution's contact address, if that address confirmed a link
    sent to itself through onboarding (what a change merely typed as the
    contact does not count)."""
    return OnboardingRequest.objects.confirmed_contact(health.server.institution)


def server_page(health: ServerHealth) -> str:
    path = reverse("admin:integrations_dicomwebserver_change", args=[health.pk])
    return public_url(path)


def _when(since: datetime | None) -> str:
    return f"{since:%Y-%m-%d %H:%M} UTC" if since else "now"


def _outcome(value: str) -> str:
    return CheckOutcome(value).label if value in CheckOutcome.values else value


def _name(alert: MonitoringAlert) -> str:
    server = alert.health.server
    return one_line(f"{server.name} ({server.institution.name})")


def _short(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _problem(alert: MonitoringAlert) -> list[str]:
    """What the check found: the registry's own words, then what the archive
    sent, each quoted as the archive's."""
    lines = [f"Outcome: {_outcome(alert.outcome)}."]
    if alert.finding:
        finding = _short(one_line(alert.finding), FINDING_LIMIT)
        lines.append(f"What the check found: {finding}")
    texts = alert.archive_text if isinstance(alert.archive_text, list) else []
    lines += [
        f"The archive answered: {inputs.quoted(text)}"
        for text in texts[:QUOTES_PER_ALERT]
    ]
    return lines


def _tls_stage(days: int) -> int:
    return min((d for d in TLS_WARNING_DAYS if days < d), default=TLS_WARNING_DAYS[0])


def compose(alert: MonitoringAlert, for_staff: bool = True) -> tuple[str, list[str]]:
    """The subject and the body lines of one alert: the alert's own sentence
    first, the archive's words (quoted) after the registry's."""
    health = alert.health
    name = _name(alert)
    short = _short(name, SUBJECT_NAME_LIMIT)
    when = _when(alert.since)
    if alert.kind == MonitoringAlert.Kind.FAILING:
        subject = f"FAILING: {short}"
        lines = [
            f"{name} is failing since {when}: {alert.failures} check(s) in a "
            "row were not ok.",
            f"What changed: {alert.before} → failing.",
            *_problem(alert),
        ]
    elif alert.kind == MonitoringAlert.Kind.RECOVERED:
        subject = f"RECOVERED: {short}"
        lines = [
            f"{name} is ok again since {when}.",
            "What changed: failing → ok.",
            "What the check found: the QIDO search (and its CORS headers) "
            "works from the uploader's origin again.",
        ]
    elif alert.kind == MonitoringAlert.Kind.FLAPPING:
        quiet = settings.MONITOR_FLAP_QUIET_INTERVALS
        subject = f"FLAPPING: {short}"
        lines = [
            f"{name} is flapping: its state changed "
            f"{settings.MONITOR_FLAP_CHANGES} times within "
            f"{settings.MONITOR_FLAP_WINDOW_HOURS:g} hour(s); it is {alert.state} "
            "now.",
            "No more emails about its changes until it holds one state for "
            f"{quiet} check interval(s) "
            f"({quiet * settings.MONITOR_INTERVAL_MINUTES:g} minutes); then one "
            "email says where it settled.",
        ]
        if alert.state == ServerHealth.State.FAILING:
            lines += _problem(alert)
    elif alert.kind == MonitoringAlert.Kind.SETTLED:
        subject = f"SETTLED, now {alert.state}: {short}"
        lines = [
            f"{name} has stopped flapping: it is {alert.state} since {when}, "
            f"{settings.MONITOR_FLAP_QUIET_INTERVALS} check interval(s) or more.",
        ]
        if alert.state == ServerHealth.State.FAILING:
            lines += _problem(alert)
    else:
        expires = alert.tls_expires_at
        subject = f"TLS certificate expires in {alert.tls_days} day(s): {short}"
        lines = [
            f"The TLS certificate of {name} expires on "
            f"{expires:%Y-%m-%d %H:%M} UTC ({alert.tls_days} day(s) left)."
            if expires
            else f"The TLS certificate of {name} expires soon.",
            "What changed: the certificate entered its last "
            f"{_tls_stage(alert.tls_days)} days.",
            "What to do: renew it before then; browsers refuse an expired "
            "certificate and the uploader stops working with this archive.",
        ]
    lines.append(f"QIDO URL: {one_line(health.server.qido_url)}")
    if for_staff:
        lines.append(f"Server page: {server_page(health)}")
    return SUBJECT_PREFIX + one_line(subject), [one_line(line) for line in lines]


def digest(alerts: Sequence[MonitoringAlert]) -> tuple[str, list[str]]:
    """One message for staff about several alerts of a round."""
    kinds = Counter(str(alert.kind) for alert in alerts)
    counts = ", ".join(
        f"{kinds[kind]} {kind}" for kind in MonitoringAlert.Kind.values if kinds[kind]
    )
    servers = len({alert.health_id for alert in alerts})
    subject = f"{len(alerts)} monitoring alerts: {counts}"
    lines = [
        f"Monitoring has {len(alerts)} alerts about {servers} server(s): {counts}.",
        "Server health: "
        + public_url(reverse("admin:integrations_serverhealth_changelist")),
    ]
    for alert in alerts[:DIGEST_DETAILS]:
        one, body = compose(alert)
        lines += ["", one.removeprefix(SUBJECT_PREFIX), *body]
    if len(alerts) > DIGEST_DETAILS:
        lines += ["", f"And {len(alerts) - DIGEST_DETAILS} more: see Server health."]
    return SUBJECT_PREFIX + subject, lines


def messages(alerts: Sequence[MonitoringAlert]) -> list[EmailMessage]:
    staff = [one_line(a) for a in staff_recipients() if one_line(a)]
    built = []
    if staff and alerts:
        subject, lines = compose(alerts[0]) if len(alerts) == 1 else digest(alerts)
        built.append(EmailMessage(subject, "\n".join(lines) + "\n", None, staff))
    for alert in alerts:
        if alert.health.alert_contact:
            contact = confirmed_contact(alert.health)
            if contact:
                subject, lines = compose(alert, for_staff=False)
                built.append(
                    EmailMessage(
                        subject, "\n".join(lines) + "\n", None, [one_line(contact)]
                    )
                )
    return built


def queue(changes: Iterable[Change]) -> list[MonitoringAlert]:
    """Store ``changes`` as pending alerts (in the caller's transaction)."""
    now = timezone.now()
    rows = [
        MonitoringAlert(
            health=change.health,
            kind=change.kind,
            state=change.health.state,
            before=change.before,
            outcome=change.outcome,
            since=change.health.since,
            failures=change.health.consecutive_failures,
            finding=inputs.escaped(one_line(change.finding), FINDING_LIMIT),
            archive_text=[
                inputs.escaped(text, STORED_ARCHIVE_TEXT)
                for text in change.archive_text[:QUOTES_PER_ALERT]
            ],
            tls_days=change.tls_days,
            tls_expires_at=change.health.tls_expires_at,
            created_at=now,
        )
        for change in changes
    ]
    return MonitoringAlert.objects.bulk_create(rows) if rows else []


def claim(settle: timedelta, now: datetime) -> list[int]:
    """The pending alerts this dispatcher mails, marked as sent in one
    transaction (skip-locked on PostgreSQL, the write lock on SQLite), so a
    second dispatcher never mails them again. None while alerts are still
    arriving (the newest younger than ``settle``), unless the oldest has
    waited an interval."""
    with transaction.atomic():
        pending = MonitoringAlert.objects.filter(
            sent_at__isnull=True, attempts__lt=MAX_ATTEMPTS
        ).order_by("pk")
        if connection.features.has_select_for_update_skip_locked:
            pending = pending.select_for_update(skip_locked=True)
        rows = list(pending.values_list("pk", "created_at")[:FLUSH_LIMIT])
        if not rows:
            return []
        newest = max(created for _, created in rows)
        oldest = min(created for _, created in rows)
        waited = timedelta(minutes=settings.MONITOR_INTERVAL_MINUTES)
        if now - newest < settle and now - oldest < waited:
            return []
        ids = [pk for pk, _ in rows]
        MonitoringAlert.objects.filter(pk__in=ids).update(sent_at=now)
    return ids


def flush(settle: timedelta = timedelta(0), now: datetime | None = None) -> int:
    """Mail the pending alerts (one message to staff, see ``claim``); a mail
    server that is down is logged, never an error of the round, and the
    alerts are tried again at the next tick. How many messages went."""
    ids = claim(settle, now or timezone.now())
    if not ids:
        return 0
    try:
        alerts = list(
            MonitoringAlert.objects.filter(pk__in=ids).select_related(
                "health__server__institution"
            )
        )
        outgoing = messages(alerts)
        if not outgoing:
            return 0
        with get_connection() as mail:
            return mail.send_messages(outgoing) or 0
    except Exception:
        logger.exception("Could not send %d monitoring alert(s)", len(ids))
        MonitoringAlert.objects.filter(pk__in=ids).update(
            sent_at=None, attempts=F("attempts") + 1
        )
        return 0


def prune(before: datetime) -> int:
    """Alerts created before ``before`` (mailed, or given up on)."""
    return MonitoringAlert.objects.filter(created_at__lt=before).delete()[0]
