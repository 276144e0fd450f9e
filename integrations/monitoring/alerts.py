"""Alert emails: one per state change (failing, recovered) and per TLS
warning stage, to MONITOR_ALERT_EMAILS (default: active staff who may change
servers) and, when the server opts in, the institution's confirmed contact.

Every value that came from a person or an archive (names, findings) is put on
one line with ``one_line`` before it is written into a subject or a line."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.mail import EmailMessage, get_connection
from django.urls import reverse

from integrations.models import CheckOutcome, OnboardingRequest, ServerHealth
from integrations.publicurls import public_url
from integrations.validators import one_line

if TYPE_CHECKING:
    from integrations.monitoring.states import Change

logger = logging.getLogger(__name__)

SUBJECT_PREFIX = "[Pacsbin Integrations] "


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
    institution = health.server.institution
    address = institution.contact_email
    if OnboardingRequest.objects.address_confirmed(institution, address):
        return address
    return None


def server_page(health: ServerHealth) -> str:
    path = reverse("admin:integrations_dicomwebserver_change", args=[health.pk])
    return public_url(path)


def _when(health: ServerHealth) -> str:
    return f"{health.since:%Y-%m-%d %H:%M} UTC" if health.since else "now"


def _outcome(value: str) -> str:
    return CheckOutcome(value).label if value in CheckOutcome.values else value


def compose(change: Change, for_staff: bool = True) -> tuple[str, list[str]]:
    """The subject and the body lines of one alert."""
    health = change.health
    server = health.server
    name = one_line(f"{server.name} ({server.institution.name})")
    if change.kind == "failing":
        subject = f"FAILING: {name}"
        lines = [
            f"{name} is failing since {_when(health)}: "
            f"{health.consecutive_failures} check(s) in a row were not ok.",
            f"What changed: {change.before} → failing.",
            f"Outcome: {_outcome(change.outcome)}.",
            f"What the check found: {one_line(change.finding)}",
        ]
    elif change.kind == "recovered":
        subject = f"RECOVERED: {name}"
        lines = [
            f"{name} is ok again since {_when(health)}.",
            "What changed: failing → ok.",
            "What the check found: the QIDO search (and its CORS headers) "
            "works from the uploader's origin again.",
        ]
    else:
        expires = health.tls_expires_at
        subject = f"TLS certificate expires in {change.tls_days} day(s): {name}"
        lines = [
            f"The TLS certificate of {name} expires on "
            f"{expires:%Y-%m-%d %H:%M} UTC ({change.tls_days} day(s) left)."
            if expires
            else f"The TLS certificate of {name} expires soon.",
            "What changed: the certificate entered its last "
            f"{health.tls_alert_stage} days.",
            "What to do: renew it before then; browsers refuse an expired "
            "certificate and the uploader stops working with this archive.",
        ]
    lines.append(f"QIDO URL: {one_line(server.qido_url)}")
    if for_staff:
        lines.append(f"Server page: {server_page(health)}")
    return SUBJECT_PREFIX + one_line(subject), [one_line(line) for line in lines]


def messages(changes: Iterable[Change]) -> list[EmailMessage]:
    staff = [one_line(a) for a in staff_recipients() if one_line(a)]
    built = []
    for change in changes:
        if staff:
            subject, lines = compose(change)
            built.append(EmailMessage(subject, "\n".join(lines) + "\n", None, staff))
        if change.health.alert_contact:
            contact = confirmed_contact(change.health)
            if contact:
                subject, lines = compose(change, for_staff=False)
                built.append(
                    EmailMessage(
                        subject, "\n".join(lines) + "\n", None, [one_line(contact)]
                    )
                )
    return built


def send(changes: list[Change]) -> int:
    """Send the alerts for ``changes``; a mail server that is down is logged,
    never an error of the round. How many messages went."""
    if not changes:
        return 0
    try:
        outgoing = messages(changes)
        if not outgoing:
            return 0
        with get_connection() as connection:
            return connection.send_messages(outgoing) or 0
    except Exception:
        logger.exception("Could not send %d monitoring alert(s)", len(changes))
        return 0
