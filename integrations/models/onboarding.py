"""Onboarding requests: what an institution's IT contact submitted."""

from __future__ import annotations

from datetime import timedelta
from typing import Any, ClassVar

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone
from django.utils.text import capfirst

from integrations.models.registry import DicomWebServer, Institution
from integrations.validators import (
    MAX_EMAIL_LENGTH,
    MAX_URL_LENGTH,
    describe_pacsbin_proxy,
    dicomweb_url_validator,
    email_key,
    validate_single_line,
)


class OnboardingRequestQuerySet(models.QuerySet["OnboardingRequest"]):
    """Where a request stands with its email confirmation.

    Only a confirmed request is ever reviewed. An unconfirmed one expires
    ``ONBOARDING_CONFIRM_HOURS`` after it was sent: from then on it counts as
    expired by these queries alone, and ``expire_onboarding_requests`` deletes
    it (it never reached anyone, and holds what a stranger typed).
    """

    @staticmethod
    def confirmation_cutoff() -> Any:
        return timezone.now() - timedelta(hours=settings.ONBOARDING_CONFIRM_HOURS)

    def confirmed(self) -> OnboardingRequestQuerySet:
        return self.filter(confirmed_at__isnull=False)

    def awaiting_confirmation(self) -> OnboardingRequestQuerySet:
        return self.filter(
            confirmed_at__isnull=True, created_at__gt=self.confirmation_cutoff()
        )

    def confirmation_expired(self) -> OnboardingRequestQuerySet:
        return self.filter(
            confirmed_at__isnull=True, created_at__lte=self.confirmation_cutoff()
        )

    def review_queue(self) -> OnboardingRequestQuerySet:
        return self.confirmed().filter(status=OnboardingRequest.Status.SUBMITTED)

    def confirmed_contact(self, institution: Institution) -> str | None:
        """The institution's contact address, if that address confirmed a
        link sent to itself (``address_confirmed``); mail to a contact only
        ever goes there."""
        address = institution.contact_email
        return address if self.address_confirmed(institution, address) else None

    def address_confirmed(self, institution: Institution, address: str) -> bool:
        """Whether ``address`` confirmed, by a link sent to itself, a request
        about ``institution``. What a request merely says (the contact email
        typed into a change) never counts."""
        if not address:
            return False
        mine = self.filter(institution=institution)
        confirmed = [
            *mine.filter(address_confirmed_at__isnull=False).values_list(
                "confirmation_address", flat=True
            ),
            *mine.filter(new_contact_confirmed_at__isnull=False).values_list(
                "new_contact_address", flat=True
            ),
        ]
        try:
            key = email_key(address)
            return any(email_key(e) == key for e in confirmed if e)
        except ValidationError:
            return False


class OnboardingRequest(models.Model):
    """What an institution's IT contact submitted on the public pages.

    Nothing here reaches the uploader: only ``onboarding.approve_request`` turns
    a request into live registry rows, after a staffer has looked at it.
    """

    class Kind(models.TextChoices):
        NEW = "new", "New server"
        UPDATE = "update", "Change to a server"

    class Status(models.TextChoices):
        SUBMITTED = "submitted", "Waiting for review"
        APPROVED = "approved", "Approved"
        REJECTED = "rejected", "Rejected"

    kind = models.CharField(max_length=8, choices=Kind.choices, default=Kind.NEW)
    status = models.CharField(
        max_length=16, choices=Status.choices, default=Status.SUBMITTED
    )
    # Short and readable, for phone calls and email subjects; not a secret.
    reference = models.CharField(max_length=16, unique=True, editable=False)
    # The secret behind the status link; the link carries it signed, so a copy
    # of the database alone cannot forge a working link.
    token = models.CharField(max_length=64, unique=True, editable=False)
    # For updates: the live rows the request changes. For new requests: empty
    # until approval, then the rows that approval created or used.
    institution = models.ForeignKey(
        Institution,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="onboarding_requests",
    )
    server = models.ForeignKey(
        DicomWebServer,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="onboarding_requests",
    )
    submitted_from = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="updates",
        help_text="The request whose status link this update was sent from.",
    )
    # The live values an update was based on, to notice changes made meanwhile.
    baseline = models.JSONField(default=dict, blank=True)

    institution_name = models.CharField(max_length=200)
    contact_name = models.CharField(max_length=200, validators=[validate_single_line])
    contact_email = models.CharField(max_length=MAX_EMAIL_LENGTH)
    # Where the confirmation link went: the typed address for a new request,
    # the address on record for a change (the status link proves nothing: it
    # is shown to whoever submits). Decisions are mailed here, once confirmed.
    confirmation_address = models.CharField(max_length=MAX_EMAIL_LENGTH, blank=True)
    address_confirmed_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="When the confirmation address pressed the button behind "
        "the link sent to it.",
    )
    # A change that names a contact address other than the one confirming it:
    # that address gets a link of its own once the change is confirmed, and
    # becomes the institution's contact only if it confirms there too.
    new_contact_address = models.CharField(max_length=MAX_EMAIL_LENGTH, blank=True)
    new_contact_confirmed_at = models.DateTimeField(null=True, blank=True)
    confirmed_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="When every address the request needs had confirmed the "
        "link sent to it; only then is the request reviewed.",
    )
    confirmation_sent_at = models.DateTimeField(null=True, blank=True)
    confirmation_sends = models.PositiveSmallIntegerField(default=0)
    server_name = models.CharField(max_length=200)
    qido_url = models.CharField(
        "QIDO URL", max_length=MAX_URL_LENGTH, validators=[dicomweb_url_validator]
    )
    wado_url = models.CharField(
        "WADO URL", max_length=MAX_URL_LENGTH, validators=[dicomweb_url_validator]
    )
    # The archive's own URLs, kept when the contact later gave a reverse
    # proxy's URLs on the status page before review (qido_url and wado_url are
    # then the proxy's, which approval activates); blank otherwise.
    archive_qido_url = models.CharField(
        "archive's own QIDO URL", max_length=MAX_URL_LENGTH, blank=True
    )
    archive_wado_url = models.CharField(
        "archive's own WADO URL", max_length=MAX_URL_LENGTH, blank=True
    )
    proxy_urls_given_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="When the contact last gave the reverse proxy's URLs on the "
        "status page.",
    )
    cors_mode = models.CharField(
        "how CORS is met",
        max_length=16,
        choices=DicomWebServer.CorsMode.choices,
        default=DicomWebServer.CorsMode.DIRECT,
    )
    needs_credentials = models.BooleanField("needs browser credentials", default=False)
    pacsbin_proxy = models.JSONField(
        "Pacsbin's proxy settings", null=True, blank=True, default=None
    )
    edge_enforced = models.BooleanField("enforced at the archive's edge", default=False)
    notes = models.TextField(blank=True)
    emails_to_add = models.JSONField(default=list, blank=True)
    emails_to_remove = models.JSONField(default=list, blank=True)
    # The last day the emails to add are approved (the end of a study, say);
    # null: no end. Applied when the request is approved (lifecycle).
    emails_end_on = models.DateField("approved until", null=True, blank=True)

    reviewer = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    reviewed_at = models.DateTimeField(null=True, blank=True)
    reason = models.TextField(
        blank=True, help_text="Why it was rejected; the contact is told."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    client_address = models.GenericIPAddressField(null=True, blank=True)

    objects = OnboardingRequestQuerySet.as_manager()

    class Meta:
        verbose_name = "onboarding request"
        ordering = ["-created_at", "-pk"]
        indexes = [
            models.Index(fields=["status", "created_at"], name="onboarding_queue_idx")
        ]

    def __str__(self) -> str:
        return f"{self.reference} · {self.institution_name} · {self.server_name}"

    # Each field that describes a live row: (which row, its field there).
    LIVE_FIELDS: ClassVar[dict[str, tuple[str, str]]] = {
        "contact_name": ("institution", "contact_name"),
        "contact_email": ("institution", "contact_email"),
        "server_name": ("server", "name"),
        "qido_url": ("server", "qido_url"),
        "wado_url": ("server", "wado_url"),
        "cors_mode": ("server", "cors_mode"),
        "needs_credentials": ("server", "needs_credentials"),
        "pacsbin_proxy": ("server", "pacsbin_proxy"),
        "edge_enforced": ("server", "edge_enforced"),
    }

    def live_values(self, row: str) -> dict[str, Any]:
        """The values this request gives the live ``row`` ("institution" or
        "server"), named as that row's fields."""
        return {
            live: getattr(self, mine)
            for mine, (target, live) in self.LIVE_FIELDS.items()
            if target == row
        }

    def institution_values(self) -> dict[str, Any]:
        return self.live_values("institution")

    def server_values(self) -> dict[str, Any]:
        return self.live_values("server")

    @classmethod
    def values_describing(cls, server: DicomWebServer) -> dict[str, Any]:
        """A live server's (and its institution's) values, named as a
        request's fields: what a change starts from."""
        rows = {"institution": server.institution, "server": server}
        return {
            mine: getattr(rows[target], live)
            for mine, (target, live) in cls.LIVE_FIELDS.items()
        }

    @classmethod
    def label_of(cls, field: str) -> str:
        model_field = cls._meta.get_field(field)
        if not isinstance(model_field, models.Field):
            raise TypeError(f"{field!r} is not a concrete field of {cls.__name__}.")
        return capfirst(str(model_field.verbose_name))

    @property
    def pacsbin_proxy_described(self) -> str:
        return describe_pacsbin_proxy(self.pacsbin_proxy)

    @property
    def is_open(self) -> bool:
        return self.status == self.Status.SUBMITTED

    @property
    def is_confirmed(self) -> bool:
        return self.confirmed_at is not None

    @property
    def confirmation_deadline(self) -> Any:
        return self.created_at + timedelta(hours=settings.ONBOARDING_CONFIRM_HOURS)

    @property
    def confirmation_expired(self) -> bool:
        return not self.is_confirmed and timezone.now() >= self.confirmation_deadline

    @property
    def is_awaiting_confirmation(self) -> bool:
        return not self.is_confirmed and not self.confirmation_expired

    @property
    def is_address_confirmed(self) -> bool:
        return self.address_confirmed_at is not None

    @property
    def awaits_new_contact(self) -> bool:
        """The change is confirmed from the record; the new contact address
        has still to confirm the link sent to it."""
        return bool(self.new_contact_address) and self.new_contact_confirmed_at is None

    @property
    def gave_proxy_urls(self) -> bool:
        return bool(self.archive_qido_url)

    @property
    def pending_address(self) -> str:
        """The address whose confirmation the request waits for ('' if none)."""
        if self.is_confirmed:
            return ""
        if not self.is_address_confirmed:
            return self.confirmation_address
        return self.new_contact_address if self.awaits_new_contact else ""
