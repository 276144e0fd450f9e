"""Access reviews: every ACCESS_REVIEW_DAYS a server's confirmed contact is
asked, by a private emailed link, which of its approved emails still need
access (README "Access reviews"). One open review per server at a time."""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta

from django.conf import settings
from django.db import models
from django.db.models import Q

from integrations.models.registry import DicomWebServer
from integrations.validators import MAX_EMAIL_LENGTH

ONE_OPEN_REVIEW = "access_review_one_open_per_server"
# A link keeps working this long past the review's due date (a contact who
# opens it on the last day still has time to finish), unless answered or
# closed by staff or enforcement.
LINK_MARGIN = timedelta(days=7)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


class AccessReview(models.Model):
    class State(models.TextChoices):
        SENT = "sent", "Sent, waiting for the contact"
        OVERDUE = "overdue", "Overdue (staff alerted)"
        ANSWERED = "answered", "Answered"
        EXPIRED = "expired", "Expired unanswered"
        CANCELLED = "cancelled", "Cancelled by staff"

    # A review in one of these is the server's open one (the link works).
    OPEN_STATES = (State.SENT, State.OVERDUE)

    server = models.ForeignKey(
        DicomWebServer, on_delete=models.CASCADE, related_name="access_reviews"
    )
    state = models.CharField(max_length=16, choices=State.choices, default=State.SENT)
    created_at = models.DateTimeField(db_index=True)
    sent_to = models.CharField(
        max_length=MAX_EMAIL_LENGTH, help_text="The confirmed contact, at sending."
    )
    due_at = models.DateTimeField(
        help_text="Created + ACCESS_REVIEW_GRACE_DAYS; overdue after."
    )
    answered_at = models.DateTimeField(null=True, blank=True)
    note = models.TextField(blank=True)
    # Who started it: "schedule", or the staffer / API key that asked.
    started_by = models.CharField(max_length=200, blank=True)
    # The emails the contact removed when answering (what they kept is the
    # rest of the list at that time, in the approvals' history).
    removed = models.JSONField(default=list, blank=True)
    kept_count = models.PositiveIntegerField(default=0)
    # sha256 of the random token in the emailed link (the link is the only
    # copy of the token).
    token_hash = models.CharField(max_length=64, unique=True, editable=False)

    class Meta:
        verbose_name = "access review"
        ordering = ["-created_at", "-pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["server"],
                condition=Q(state__in=["sent", "overdue"]),
                name=ONE_OPEN_REVIEW,
            )
        ]
        indexes = [models.Index(fields=["state", "due_at"], name="review_state_due")]

    def __str__(self) -> str:
        return f"Access review {self.pk} of {self.server}"

    @property
    def is_open(self) -> bool:
        return self.state in self.OPEN_STATES

    @property
    def link_expires_at(self) -> datetime:
        return self.due_at + LINK_MARGIN

    @staticmethod
    def grace() -> timedelta:
        return timedelta(days=settings.ACCESS_REVIEW_GRACE_DAYS)
