"""Approvals that end: the one rule for an end date, and the notice a week
before.

An approval's ``expires_at`` (null: never) is set by every path that adds
emails (API ``expires_at``/``days``, the admin's "Access lasts", the public
form's "approved until", imports keep it). Past it the approval is gone from
the access answer (the same one query) and refused by the gate.

``notify_expiring`` runs on monitoring's schedule (beat's
``approvals.notify_expiring``, or ``manage.py monitor``): for each active
server whose approvals end within NOTICE_DAYS, one mail to staff and one to
the institution's confirmed contact, listing the emails and their end dates.
The approvals are claimed first (``expiry_notified_at``, skip-locked on
PostgreSQL, the write lock on SQLite), so two dispatchers never mail them
twice; a mail server that refuses releases them for the next round. A new end
date clears the claim, so it is told again.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any

from django.core.exceptions import ValidationError
from django.core.mail import EmailMessage, get_connection
from django.db import connection, transaction
from django.urls import reverse
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from integrations.inputs import escaped
from integrations.models import ApprovedUser, DicomWebServer, OnboardingRequest
from integrations.publicurls import public_origin, public_url
from integrations.validators import one_line

logger = logging.getLogger(__name__)

# The longest an approval may be given at once (about ten years): beyond it
# a value is a typo (days for hours, a year 2206), not a decision.
MAX_DAYS = 3650
# How long before its end an approval is told about.
NOTICE_DAYS = 7
# Servers one round tells (the rest wait for the next round), and the
# approvals one mail lists by name (the rest are counted, with a link).
SERVERS_PER_ROUND = 500
LISTED_PER_MAIL = 200
SUBJECT_PREFIX = "[Pacsbin Integrations] "


@dataclass(frozen=True)
class Expiry:
    """An end said for every email of one addition: applied to the new
    approvals and to those that already existed. ``at`` None: never."""

    at: datetime | None


def end_of_day(day: date) -> datetime:
    """The first moment after ``day`` in the registry's time zone: an
    approval "until" a day lasts through it."""
    return timezone.make_aware(datetime.combine(day + timedelta(days=1), time.min))


def check_end(at: datetime, now: datetime, shown: str) -> datetime:
    """``at`` if it is in the future and at most MAX_DAYS away; otherwise a
    ValidationError naming ``shown`` (the value as given)."""
    if at <= now:
        raise ValidationError(
            "“%(value)s” is in the past: an end date must be later than now.",
            code="past",
            params={"value": shown},
        )
    if at > now + timedelta(days=MAX_DAYS):
        raise ValidationError(
            "“%(value)s” is more than %(max)s days away; give at most %(max)s "
            "days (or no end at all).",
            code="too_far",
            params={"value": shown, "max": MAX_DAYS},
        )
    return at


def parse_end(raw: Any, now: datetime) -> datetime:
    """An ISO 8601 date-time (without an offset: the registry's time zone) or
    a date (the approval lasts through that day) as an end, checked."""
    if not isinstance(raw, str):
        raise ValidationError(
            "%(value)s is not a date: give an ISO 8601 date-time such as "
            "2027-03-31T17:00:00Z, or a date such as 2027-03-31.",
            code="invalid",
            params={"value": escaped(_json_shown(raw), 80)},
        )
    shown = escaped(raw.strip(), 80)
    text = raw.strip()
    try:
        day = parse_date(text) if len(text) <= 10 else None
        at = end_of_day(day) if day else parse_datetime(text)
    except (ValueError, OverflowError):
        at = None
    if at is None:
        raise ValidationError(
            "“%(value)s” is not a date: give an ISO 8601 date-time such as "
            "2027-03-31T17:00:00Z, or a date such as 2027-03-31.",
            code="invalid",
            params={"value": shown},
        )
    if timezone.is_naive(at):
        at = timezone.make_aware(at)
    return check_end(at, now, shown)


def end_in_days(raw: Any, now: datetime) -> datetime:
    """``now`` plus ``raw`` whole days (1 to MAX_DAYS)."""
    if isinstance(raw, bool) or not isinstance(raw, int) or not 1 <= raw <= MAX_DAYS:
        raise ValidationError(
            "%(value)s is not a number of days: give a whole number from 1 to %(max)s.",
            code="invalid",
            params={"value": escaped(_json_shown(raw), 80), "max": MAX_DAYS},
        )
    return now + timedelta(days=raw)


def expiry_from(data: Mapping[str, Any], now: datetime) -> Expiry | None:
    """The end an API call asks for: ``expires_at`` (null: never) or
    ``days``; None when it names neither. ValidationError by field."""
    if "expires_at" in data and "days" in data:
        raise ValidationError(
            {
                "days": ValidationError(
                    "Give either expires_at or days, not both.", code="both"
                )
            }
        )
    try:
        if "days" in data:
            return Expiry(end_in_days(data["days"], now))
        if "expires_at" in data:
            raw = data["expires_at"]
            return Expiry(None if raw is None else parse_end(raw, now))
    except ValidationError as exc:
        field = "days" if "days" in data else "expires_at"
        raise ValidationError({field: exc.error_list}) from None
    return None


def check_end_day(day: date, today: date) -> date:
    """A form's "approved until" day: today at the earliest (the approval
    then lasts through today), MAX_DAYS ahead at the latest."""
    if day < today:
        raise ValidationError(
            "%(value)s is in the past: give today or a later day.",
            code="past",
            params={"value": day.isoformat()},
        )
    if day > today + timedelta(days=MAX_DAYS):
        raise ValidationError(
            "%(value)s is more than %(max)s days away; give an earlier day or "
            "leave it empty (no end).",
            code="too_far",
            params={"value": day.isoformat(), "max": MAX_DAYS},
        )
    return day


def _json_shown(raw: Any) -> str:
    try:
        return json.dumps(raw, ensure_ascii=False)[:200]
    except (TypeError, ValueError):
        return repr(raw)[:200]


# --- The notice a week before ------------------------------------------------


@dataclass(frozen=True)
class Ending:
    pk: int
    email: str
    expires_at: datetime


def ending_soon(now: datetime | None = None) -> Any:
    """Approvals that end within NOTICE_DAYS (the admin's "Ends within 7
    days")."""
    now = now or timezone.now()
    return ApprovedUser.objects.filter(
        expires_at__gt=now, expires_at__lte=now + timedelta(days=NOTICE_DAYS)
    )


def due(now: datetime) -> Any:
    """Approvals of active servers that end within NOTICE_DAYS and were not
    told yet."""
    return ApprovedUser.objects.filter(
        expiry_notified_at__isnull=True,
        expires_at__gt=now,
        expires_at__lte=now + timedelta(days=NOTICE_DAYS),
        server__status=DicomWebServer.Status.ACTIVE,
    )


def claim(server_id: int, now: datetime) -> list[Ending]:
    """The server's approvals this dispatcher tells, marked as told in one
    transaction, so that no other dispatcher tells them again."""
    with transaction.atomic():
        rows = due(now).filter(server_id=server_id).order_by("expires_at", "email_key")
        if connection.features.has_select_for_update_skip_locked:
            rows = rows.select_for_update(skip_locked=True, of=("self",))
        endings = [
            Ending(pk, email, at)
            for pk, email, at in rows.values_list("pk", "email", "expires_at")
        ]
        ids = [ending.pk for ending in endings]
        for start in range(0, len(ids), 2000):
            ApprovedUser.objects.filter(pk__in=ids[start : start + 2000]).update(
                expiry_notified_at=now
            )
    return endings


def release(endings: list[Ending], now: datetime) -> None:
    """Give claimed approvals back to the next round (the mail did not go)."""
    ids = [ending.pk for ending in endings]
    for start in range(0, len(ids), 2000):
        ApprovedUser.objects.filter(
            pk__in=ids[start : start + 2000], expiry_notified_at=now
        ).update(expiry_notified_at=None)


def _when(at: datetime) -> str:
    zone = timezone.get_current_timezone_name()
    return f"{timezone.localtime(at):%Y-%m-%d %H:%M} {zone}"


def _listed(endings: list[Ending]) -> list[str]:
    lines = [
        f"  {one_line(ending.email)}: ends {_when(ending.expires_at)}"
        for ending in endings[:LISTED_PER_MAIL]
    ]
    if len(endings) > LISTED_PER_MAIL:
        lines.append(f"  and {len(endings) - LISTED_PER_MAIL} more.")
    return lines


def _status_page(server: DicomWebServer) -> str | None:
    """The contact's own status page of the request that set the server up
    or last changed it (where a change is asked for), if there is one."""
    from integrations.onboarding.notify import status_url

    latest = (
        OnboardingRequest.objects.filter(
            server=server, status=OnboardingRequest.Status.APPROVED
        )
        .order_by("-reviewed_at", "-pk")
        .first()
    )
    return status_url(latest, public_origin()) if latest else None


def messages(server: DicomWebServer, endings: list[Ending]) -> list[EmailMessage]:
    """One message to staff and one to the confirmed contact, about one
    server's approvals that end soon."""
    from integrations.monitoring.alerts import staff_recipients

    name = one_line(f"{server.name} ({server.institution.name})")
    count = len(endings)
    subject = one_line(
        f"{SUBJECT_PREFIX}{count} approval(s) end within {NOTICE_DAYS} days: "
        f"{name[:80]}"
    )
    listed = _listed(endings)
    built = []
    staff = [one_line(a) for a in staff_recipients() if one_line(a)]
    if staff:
        page = public_url(
            reverse("admin:integrations_approveduser_changelist")
            + f"?server__id__exact={server.pk}&expiry=soon"
        )
        body = [
            f"These approvals for {name} end within {NOTICE_DAYS} days; after "
            "that the uploader no longer lists the server for them and an "
            "enforced edge refuses them.",
            "",
            *listed,
            "",
            "To keep one, approve it again with a new end (the server page's "
            "“Approve emails” box and “Access lasts”, or the API's approved-users "
            "POST with days or expires_at); to let it end, do nothing.",
            f"Approvals ending soon: {page}",
        ]
        built.append(EmailMessage(subject, "\n".join(body) + "\n", None, staff))
    contact = OnboardingRequest.objects.confirmed_contact(server.institution)
    if contact and one_line(contact):
        status = _status_page(server)
        body = [
            f"The access of these Pacsbin accounts to {name} ends within "
            f"{NOTICE_DAYS} days:",
            "",
            *listed,
            "",
            "If someone should keep access, ask for it again with a new end "
            + (
                f"date as a change from your status page: {status}"
                if status
                else "date: reply to Pacsbin's onboarding staff."
            ),
            "If their access should end, there is nothing to do.",
        ]
        built.append(
            EmailMessage(subject, "\n".join(body) + "\n", None, [one_line(contact)])
        )
    return built


def notify_expiring(now: datetime | None = None) -> int:
    """Tell staff and contacts of the approvals that end within NOTICE_DAYS,
    one mail each per server; how many messages went. A mail server that
    refuses is logged, never an error of the round, and the approvals are
    told at the next round."""
    now = now or timezone.now()
    server_ids = list(
        due(now)
        .order_by("server_id")
        .values_list("server_id", flat=True)
        .distinct()[:SERVERS_PER_ROUND]
    )
    sent = 0
    for server_id in server_ids:
        endings = claim(server_id, now)
        if not endings:
            continue  # another dispatcher has them
        try:
            server = DicomWebServer.objects.select_related("institution").get(
                pk=server_id
            )
            outgoing = messages(server, endings)
            if outgoing:
                with get_connection() as mail:
                    sent += mail.send_messages(outgoing) or 0
        except Exception:
            logger.exception(
                "Could not send the expiry notice of server %s; trying again "
                "next round",
                server_id,
            )
            release(endings, now)
    return sent
