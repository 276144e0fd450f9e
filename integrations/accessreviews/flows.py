"""The flows of an access review, each one named function in one transaction.

Scheduling claims one server at a time: the server's row is locked (FOR
UPDATE SKIP LOCKED on PostgreSQL: a server another scheduler holds is left
to it; on SQLite every transaction takes the write lock when it begins), the
server is checked to be still due, and the review is created; the partial
unique constraint (one open review per server) stops a second one whatever
path creates it. The link's token exists only in the email; the row keeps
its hash.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.core.mail import EmailMessage, get_connection, send_mail
from django.db import IntegrityError, connection, transaction
from django.db.models import Exists, Max, OuterRef, Q, QuerySet
from django.urls import reverse
from django.utils import timezone
from simple_history.utils import bulk_update_with_history

from integrations import audit, registry
from integrations.edge import decisions
from integrations.models import (
    AccessReview,
    ApprovedUser,
    DicomWebServer,
    OnboardingRequest,
)
from integrations.models.reviews import LINK_MARGIN, token_hash
from integrations.monitoring.alerts import SUBJECT_PREFIX, staff_recipients
from integrations.publicurls import public_url
from integrations.validators import one_line

logger = logging.getLogger(__name__)

# Servers one run looks at (the rest wait for the next run, ten minutes on).
RUN_LIMIT = 500
# What the page's note keeps.
NOTE_LIMIT = 2000
# How an overdue review names itself in the approvals' history.
ENFORCE_ACTOR = "access review overdue (ACCESS_REVIEW_ENFORCE)"


class ReviewRefused(Exception):
    """No review was started; the message says why, naming the server."""

    code = "refused"


class ReviewOpen(ReviewRefused):
    code = "review_open"


class NoConfirmedContact(ReviewRefused):
    code = "no_confirmed_contact"


class ReviewClosed(Exception):
    """The review behind a link can no longer be answered."""

    def __init__(self, review: AccessReview) -> None:
        self.review = review
        super().__init__(review.state)


def contact_label(review: AccessReview) -> str:
    """The actor of the contact's changes in the history."""
    return one_line(f"{review.sent_to} (access review {review.pk})")[:200]


def review_url(token: str) -> str:
    return public_url(reverse("integrations:access_review", kwargs={"link": token}))


def open_reviews() -> QuerySet[AccessReview]:
    return AccessReview.objects.filter(state__in=AccessReview.OPEN_STATES)


def due_servers(now: datetime, limit: int = RUN_LIMIT) -> list[int]:
    """Active servers whose institution has a contact address, with no open
    review, whose last review (or, without one, whose creation) is at least
    ACCESS_REVIEW_DAYS old; [] when reviews are off."""
    if not settings.ACCESS_REVIEW_DAYS:
        return []
    cutoff = now - timedelta(days=settings.ACCESS_REVIEW_DAYS)
    servers = (
        DicomWebServer.objects.filter(status=DicomWebServer.Status.ACTIVE)
        .exclude(institution__contact_email="")
        .annotate(
            last_review=Max("access_reviews__created_at"),
            has_open=Exists(open_reviews().filter(server=OuterRef("pk"))),
        )
        .filter(has_open=False)
        .filter(
            Q(last_review__lte=cutoff)
            | Q(last_review__isnull=True, created_at__lte=cutoff)
        )
        .order_by("pk")
    )
    return list(servers.values_list("pk", flat=True)[:limit])


def _still_due(server: DicomWebServer, now: datetime) -> bool:
    cutoff = now - timedelta(days=settings.ACCESS_REVIEW_DAYS)
    reviews = AccessReview.objects.filter(server=server)
    last = reviews.aggregate(last=Max("created_at"))["last"]
    return (last or server.created_at) <= cutoff


@dataclass
class Started:
    review: AccessReview
    token: str


def _create(
    server: DicomWebServer, contact: str, started_by: str, now: datetime
) -> Started:
    """The review row (inside the caller's transaction, server row locked)."""
    if open_reviews().filter(server=server).exists():
        raise ReviewOpen(
            f"“{server.name}” already has an open access review; it must be "
            "answered, expire or be cancelled before another starts."
        )
    token = secrets.token_urlsafe(32)
    try:
        with transaction.atomic():
            review = AccessReview.objects.create(
                server=server,
                created_at=now,
                due_at=now + AccessReview.grace(),
                sent_to=contact,
                started_by=started_by[:200],
                token_hash=token_hash(token),
            )
    except IntegrityError:
        # Another path created one between the check and the insert.
        raise ReviewOpen(
            f"“{server.name}” already has an open access review."
        ) from None
    return Started(review, token)


def start_review(
    server: DicomWebServer, started_by: str, now: datetime | None = None
) -> Started:
    """Start a review of ``server`` now and mail its contact (staff's action
    and the API). ReviewOpen or NoConfirmedContact when it cannot."""
    now = now or timezone.now()
    with transaction.atomic():
        DicomWebServer.objects.select_for_update().filter(pk=server.pk).exists()
        contact = OnboardingRequest.objects.confirmed_contact(server.institution)
        if not contact:
            raise NoConfirmedContact(
                f"“{server.name}” has no confirmed contact: the institution's "
                "contact address must have confirmed a link sent to it through "
                "onboarding before a review can be mailed there."
            )
        started = _create(server, contact, started_by, now)
    mail_contact(started)
    return started


def schedule(now: datetime | None = None) -> list[AccessReview]:
    """Start the reviews that are due (one claim per server, see the
    module's doc); the reviews started."""
    now = now or timezone.now()
    started: list[Started] = []
    for pk in due_servers(now):
        with transaction.atomic():
            locked = DicomWebServer.objects.select_related("institution").filter(pk=pk)
            if connection.features.has_select_for_update_skip_locked:
                locked = locked.select_for_update(skip_locked=True, of=("self",))
            else:
                locked = locked.select_for_update(of=("self",))
            server = locked.first()
            if server is None or server.status != DicomWebServer.Status.ACTIVE:
                continue
            if not _still_due(server, now):
                continue
            contact = OnboardingRequest.objects.confirmed_contact(server.institution)
            if not contact:
                continue
            try:
                started.append(_create(server, contact, "schedule", now))
            except ReviewOpen:
                continue
    for one in started:
        mail_contact(one)
    return [one.review for one in started]


def mail_contact(started: Started) -> None:
    """The review's link to the contact. A mail server that is down is
    logged; staff can cancel and start the review again."""
    review = started.review
    server = review.server
    count = server.approved_users.count()
    body = (
        "Hello,\n\n"
        f"Please review who can reach the images of {one_line(server.name)} "
        f"({one_line(server.institution.name)}) through Pacsbin's uploader: "
        f"{count} email address(es) are approved today. The page behind this "
        "link lists each with when it was added, by whom, and when it last "
        "reached the archive. Everyone keeps access unless you mark them for "
        "removal; add a note if you like, and press the button.\n\n"
        f"{review_url(started.token)}\n\n"
        f"Please answer by {review.due_at:%Y-%m-%d} (UTC). "
        + (
            "After that date the approvals nobody reviewed expire.\n\n"
            if settings.ACCESS_REVIEW_ENFORCE
            else "After that date Pacsbin staff are told the review is overdue.\n\n"
        )
        + "The link is private to you and works until the review is answered. "
        "Pacsbin asks every contact for this review every "
        f"{settings.ACCESS_REVIEW_DAYS} days.\n"
    )
    try:
        send_mail(
            one_line(f"Please review who can reach {server.name} through Pacsbin"),
            body,
            None,
            [one_line(review.sent_to)],
        )
    except Exception:
        logger.exception("Could not mail access review %s", review.pk)


# --- Answering --------------------------------------------------------------------


def review_for_link(token: str) -> AccessReview | None:
    """The review a link opens (None for a tampered or unknown link)."""
    if not token or len(token) > 100:
        return None
    return (
        AccessReview.objects.select_related("server__institution")
        .filter(token_hash=token_hash(token))
        .first()
    )


def is_answerable(review: AccessReview, now: datetime | None = None) -> bool:
    return review.is_open and (now or timezone.now()) < review.link_expires_at


@dataclass
class Answered:
    review: AccessReview
    removed: list[str] = field(default_factory=list)


def answer(
    review: AccessReview, remove_ids: set[int], note: str, now: datetime | None = None
) -> Answered:
    """The contact's answer: remove the marked approvals of the review's
    server (all or nothing, the contact as the history's actor) and close
    the review. ReviewClosed when it was answered or closed meanwhile."""
    now = now or timezone.now()
    with transaction.atomic():
        current = AccessReview.objects.select_for_update().get(pk=review.pk)
        if not is_answerable(current, now):
            raise ReviewClosed(current)
        server = review.server
        emails = [
            email
            for batch in registry.chunks(sorted(remove_ids))
            for email in ApprovedUser.objects.filter(
                server=server, pk__in=batch
            ).values_list("email", flat=True)
        ]
        with audit.acting_as(label=contact_label(current)):
            removed = registry.remove_approved_users(server, emails)
        current.state = AccessReview.State.ANSWERED
        current.answered_at = now
        current.note = note[:NOTE_LIMIT]
        current.removed = removed
        current.kept_count = server.approved_users.count()
        current.save(
            update_fields=["state", "answered_at", "note", "removed", "kept_count"]
        )
    return Answered(current, removed)


# --- Overdue reviews ---------------------------------------------------------------


def _claim(reviews: QuerySet[AccessReview]) -> list[AccessReview]:
    """Lock ``reviews`` for this caller (skipping rows another holds)."""
    if connection.features.has_select_for_update_skip_locked:
        reviews = reviews.select_for_update(skip_locked=True, of=("self",))
    else:
        reviews = reviews.select_for_update(of=("self",))
    return list(reviews.select_related("server__institution")[:RUN_LIMIT])


def expire_approvals(review: AccessReview, now: datetime) -> int:
    """ACCESS_REVIEW_ENFORCE: the approvals the review asked about (those
    that existed when it was sent) without an earlier expiry expire now, in
    the history with the enforcement as actor. One staff added since then
    was not part of the question, and stays."""
    server = review.server
    rows = list(
        ApprovedUser.objects.filter(
            server=server, created_at__lte=review.created_at
        ).filter(Q(expires_at__isnull=True) | Q(expires_at__gt=now))
    )
    for row in rows:
        row.expires_at = now
    if rows:
        with audit.acting_as(label=ENFORCE_ACTOR):
            bulk_update_with_history(
                rows,
                ApprovedUser,
                ["expires_at"],
                batch_size=registry.BULK_BATCH_SIZE,
                default_date=now,
                **audit.bulk_history_attrs(),
            )
        decisions.invalidate(server.pk)  # a bulk update sends no signal
    return len(rows)


@dataclass
class Overdue:
    review: AccessReview
    expired: int = 0


def mark_overdue(now: datetime | None = None) -> list[Overdue]:
    """Sent reviews past their due date become overdue (or, enforced, expire
    with their server's approvals), each claimed once; staff get one mail
    about all of them. Overdue ones whose link has run out close."""
    now = now or timezone.now()
    found: list[Overdue] = []
    with transaction.atomic():
        for review in _claim(
            AccessReview.objects.filter(
                state=AccessReview.State.SENT, due_at__lte=now
            ).order_by("pk")
        ):
            item = Overdue(review)
            if settings.ACCESS_REVIEW_ENFORCE:
                item.expired = expire_approvals(review, now)
                review.state = AccessReview.State.EXPIRED
            else:
                review.state = AccessReview.State.OVERDUE
            review.save(update_fields=["state"])
            found.append(item)
        AccessReview.objects.filter(
            state=AccessReview.State.OVERDUE,
            due_at__lte=now - LINK_MARGIN,
        ).update(state=AccessReview.State.EXPIRED)
    if found:
        alert_staff(found)
    return found


def alert_staff(found: list[Overdue]) -> None:
    """One mail to staff (monitoring's recipients) about every review that
    went overdue in this run."""
    recipients = [one_line(a) for a in staff_recipients() if one_line(a)]
    if not recipients:
        logger.warning(
            "Nobody to tell of %d overdue access review(s): set "
            "MONITOR_ALERT_EMAILS or give a staff user an email address.",
            len(found),
        )
        return
    lines = [
        f"{len(found)} access review(s) went unanswered for "
        f"{settings.ACCESS_REVIEW_GRACE_DAYS} days:",
        "",
    ]
    for item in found:
        review = item.review
        server = review.server
        line = (
            f"- {one_line(server.name)} ({one_line(server.institution.name)}), "
            f"sent {review.created_at:%Y-%m-%d} to {one_line(review.sent_to)}"
        )
        if settings.ACCESS_REVIEW_ENFORCE:
            line += f"; {item.expired} approval(s) expired (ACCESS_REVIEW_ENFORCE)"
        lines.append(line)
    lines += [
        "",
        "Access reviews: "
        + public_url(reverse("admin:integrations_accessreview_changelist")),
    ]
    subject = f"{SUBJECT_PREFIX}{len(found)} access review(s) overdue"
    try:
        with get_connection() as mail:
            mail.send_messages(
                [EmailMessage(subject, "\n".join(lines) + "\n", None, recipients)]
            )
    except Exception:
        logger.exception("Could not mail the overdue access reviews")


def run(now: datetime | None = None) -> tuple[list[AccessReview], list[Overdue]]:
    """One run of the schedule (beat every ten minutes, or ``manage.py
    monitor``): overdue reviews first, then the reviews that are due."""
    now = now or timezone.now()
    overdue = mark_overdue(now)
    return schedule(now), overdue
