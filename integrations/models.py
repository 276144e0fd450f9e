"""The registry: institutions, their DICOMweb servers and approved users."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, models
from django.db.models.functions import Lower
from django.utils import timezone
from simple_history.models import HistoricalRecords

from integrations import audit, inputs
from integrations.validators import (
    MAX_EMAIL_LENGTH,
    MAX_URL_LENGTH,
    email_identity,
    email_key,
    normalize_dicomweb_url,
    normalize_email,
    validate_single_line,
)

INSTITUTION_NAME_UNIQUE = "institution_name_ci_unique"
SERVER_NAME_UNIQUE = "server_name_ci_unique_per_institution"
EMAIL_ONCE_PER_SERVER = "approved_user_once_per_server"

# The duplicate each uniqueness constraint refuses: (field, message naming it).
_DUPLICATES = {
    INSTITUTION_NAME_UNIQUE: (
        "name",
        "An institution named “%(value)s” already exists (names are compared "
        "ignoring case).",
    ),
    SERVER_NAME_UNIQUE: (
        "name",
        "This institution already has a server named “%(value)s” (names are "
        "compared ignoring case).",
    ),
    EMAIL_ONCE_PER_SERVER: (
        "email",
        "“%(value)s” is already approved for this server.",
    ),
}


def duplicate_error(constraint: str, value: str) -> ValidationError:
    field, message = _DUPLICATES[constraint]
    return ValidationError(
        {field: [ValidationError(message, code="unique", params={"value": value})]}
    )


def integrity_error_as_validation(
    exc: IntegrityError, values: Mapping[str, Any]
) -> ValidationError | None:
    """The clear message for a duplicate the database refused (a race past the
    form's own check), naming the value; None for any other integrity error.
    Both SQLite and PostgreSQL name the constraint in the error text."""
    text = str(exc)
    for constraint, (field, _message) in _DUPLICATES.items():
        if constraint in text:
            return duplicate_error(constraint, str(values.get(field, "")))
    return None


def _history() -> HistoricalRecords:
    return HistoricalRecords(bases=[audit.AuditedHistory], get_user=audit.history_user)


class Institution(models.Model):
    name = models.CharField(max_length=200, help_text="Unique, ignoring case.")
    contact_name = models.CharField(
        max_length=200, blank=True, validators=[validate_single_line]
    )
    # Not an EmailField: Django's validator refuses non-ASCII local parts that
    # email-validator (``normalize_email``, in clean()) accepts, and then an
    # onboarding request the form took could never be approved.
    contact_email = models.CharField(max_length=MAX_EMAIL_LENGTH, blank=True)
    notes = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    history = _history()

    class Meta:
        ordering = [Lower("name")]
        constraints = [
            models.UniqueConstraint(Lower("name"), name=INSTITUTION_NAME_UNIQUE),
        ]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        self.name = " ".join(self.name.split())
        if self.contact_email:
            self.contact_email = normalize_email(self.contact_email)

    def validate_constraints(self, exclude: Any = None) -> None:
        duplicate = Institution.objects.filter(name__iexact=self.name)
        if self.pk:
            duplicate = duplicate.exclude(pk=self.pk)
        if self.name and duplicate.exists():
            raise duplicate_error(INSTITUTION_NAME_UNIQUE, self.name)


class DicomWebServerQuerySet(models.QuerySet["DicomWebServer"]):
    def approved_for(
        self, email: str, *, active_only: bool = True
    ) -> DicomWebServerQuerySet:
        """The servers an (already normalised) email is approved for, ordered
        by institution then name. Only active ones unless ``active_only`` is
        False. The access question's one definition: the API, the admin's
        "What does this email see?" and the benchmark all ask it here."""
        servers = self.filter(approved_users__email_key=email_key(email))
        if active_only:
            servers = servers.filter(status=DicomWebServer.Status.ACTIVE)
        return servers.select_related("institution").order_by(
            Lower("institution__name"), Lower("name"), "pk"
        )


class DicomWebServer(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        ACTIVE = "active", "Active"
        SUSPENDED = "suspended", "Suspended"

    class CorsMode(models.TextChoices):
        DIRECT = "direct", "The archive sends CORS headers itself"
        REVERSE_PROXY = "reverse_proxy", "A reverse proxy adds CORS headers"
        DIMSE_PROXY = "dimse_proxy", "Pacsbin's DIMSE proxy (proxyMode dicomweb)"

    institution = models.ForeignKey(
        Institution, on_delete=models.PROTECT, related_name="servers"
    )
    name = models.CharField(
        "display name", max_length=200, help_text="Unique within the institution."
    )
    qido_url = models.CharField(
        "QIDO URL", max_length=MAX_URL_LENGTH, validators=[normalize_dicomweb_url]
    )
    wado_url = models.CharField(
        "WADO URL", max_length=MAX_URL_LENGTH, validators=[normalize_dicomweb_url]
    )
    status = models.CharField(
        max_length=16,
        choices=Status.choices,
        default=Status.PENDING,
        help_text="Only active servers are ever given to the uploader.",
    )
    cors_mode = models.CharField(
        "how CORS is met",
        max_length=16,
        choices=CorsMode.choices,
        default=CorsMode.DIRECT,
    )
    needs_credentials = models.BooleanField(
        "needs browser credentials",
        default=False,
        help_text="The archive needs the user's own cookies or HTTP auth: then "
        "'Access-Control-Allow-Origin: *' is not enough; the origin must be "
        "echoed with 'Access-Control-Allow-Credentials: true'.",
    )
    notes = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = DicomWebServerQuerySet.as_manager()
    history = _history()

    class Meta:
        verbose_name = "DICOMweb server"
        ordering = [Lower("institution__name"), Lower("name")]
        constraints = [
            models.UniqueConstraint(
                "institution",
                Lower("name"),
                name="server_name_ci_unique_per_institution",
            ),
        ]
        indexes = [models.Index(fields=["status"], name="server_status_idx")]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        self.name = " ".join(self.name.split())
        errors: dict[str, list[ValidationError]] = {}
        for field in ("qido_url", "wado_url"):
            try:
                setattr(self, field, normalize_dicomweb_url(getattr(self, field)))
            except ValidationError as exc:
                errors[field] = exc.error_list
        if errors:
            raise ValidationError(errors)

    def validate_constraints(self, exclude: Any = None) -> None:
        if not self.institution_id or not self.name:
            return
        duplicate = DicomWebServer.objects.filter(
            institution_id=self.institution_id, name__iexact=self.name
        )
        if self.pk:
            duplicate = duplicate.exclude(pk=self.pk)
        if duplicate.exists():
            raise duplicate_error(SERVER_NAME_UNIQUE, self.name)


class ApprovedUserQuerySet(models.QuerySet["ApprovedUser"]):
    def for_email(self, email: str) -> ApprovedUserQuerySet:
        return self.filter(email_key=email_key(email))

    def build(self, server: DicomWebServer, email: str) -> ApprovedUser:
        """An unsaved row with the email normalised and its key set."""
        normalised, key = email_identity(email)
        return self.model(server=server, email=normalised, email_key=key)


class ApprovedUser(models.Model):
    """One email approved for one server (never twice for the same server)."""

    server = models.ForeignKey(
        DicomWebServer, on_delete=models.CASCADE, related_name="approved_users"
    )
    email = models.CharField(
        max_length=MAX_EMAIL_LENGTH,
        help_text="The normalised form, as email-validator returns it.",
    )
    # The matching key (``validators.email_key``: local part lowered, domain in
    # IDNA ASCII form lowered), always set with the email. Kept as a
    # column so both the constraint and the access lookup are plain index scans.
    email_key = models.CharField(max_length=MAX_EMAIL_LENGTH, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    history = _history()

    objects = ApprovedUserQuerySet.as_manager()

    class Meta:
        verbose_name = "approved user"
        ordering = ["email_key"]
        constraints = [
            # Leads with server: also serves a server's list ordered by email.
            models.UniqueConstraint(
                fields=["server", "email_key"], name=EMAIL_ONCE_PER_SERVER
            ),
            models.CheckConstraint(
                condition=~models.Q(email_key=""), name="approved_user_email_key_set"
            ),
        ]
        # The access question: every approval of one email, without a table scan.
        indexes = [models.Index(fields=["email_key"], name="approved_user_email_idx")]

    def __str__(self) -> str:
        return self.email

    def clean(self) -> None:
        self.email, self.email_key = email_identity(self.email)

    def validate_constraints(self, exclude: Any = None) -> None:
        if not self.server_id or not self.email_key:
            return
        duplicate = ApprovedUser.objects.filter(
            server_id=self.server_id, email_key=self.email_key
        )
        if self.pk:
            duplicate = duplicate.exclude(pk=self.pk)
        if duplicate.exists():
            raise duplicate_error(EMAIL_ONCE_PER_SERVER, self.email)


class CheckOutcome(models.TextChoices):
    """The outcome of a connectivity check (REST API v1 contract values)."""

    OK = "ok", "OK"
    UNREACHABLE = "unreachable", "Unreachable"
    TLS_ERROR = "tls_error", "TLS error"
    NOT_DICOMWEB = "not_dicomweb", "Not DICOMweb"
    CORS_MISSING = "cors_missing", "CORS header missing"
    CORS_ORIGIN_MISMATCH = "cors_origin_mismatch", "CORS for another origin"
    PREFLIGHT_FAILED = "preflight_failed", "Preflight failed"
    CREDENTIALS_MISCONFIGURED = "credentials_misconfigured", "Credentials misconfigured"
    BLOCKED = "blocked", "Blocked by the SSRF guard"


# What a stored finding may hold: archives answer anything, and the server-side
# probe quotes their headers and URLs in its messages.
MAX_STORED_FINDINGS = 50
MAX_STORED_CODE_LENGTH = 64
MAX_STORED_MESSAGE_LENGTH = 4000


def storable_findings(findings: Any) -> list[dict[str, str]]:
    """``findings`` as ``[{code, message}]`` that every database stores and
    every page shows: NUL, control characters and lone surrogates escaped,
    lengths capped. Used on the way in and, for rows stored before, on the
    way out."""
    if not isinstance(findings, list):
        return []
    storable = []
    for finding in findings[:MAX_STORED_FINDINGS]:
        if not isinstance(finding, dict):
            continue
        storable.append(
            {
                "code": inputs.escaped(finding.get("code", ""), MAX_STORED_CODE_LENGTH),
                "message": inputs.escaped(
                    finding.get("message", ""), MAX_STORED_MESSAGE_LENGTH
                ),
            }
        )
    return storable


class ConnectivityCheckManager(models.Manager["ConnectivityCheck"]):
    def record(self, **fields: Any) -> ConnectivityCheck:
        """Store a check, its findings and origin made storable first."""
        fields["findings"] = storable_findings(fields.get("findings", []))
        fields["origin"] = inputs.escaped(fields.get("origin", ""), 200)
        return self.create(**fields)


class ConnectivityCheck(models.Model):
    """One probe of a server from one origin, by the registry or a browser."""

    objects = ConnectivityCheckManager()

    class Source(models.TextChoices):
        SERVER = "server", "Server-side probe"
        BROWSER = "browser", "Someone's browser"

    Outcome = CheckOutcome

    # Server-side checks always have a server. A browser check from the status
    # page of a request not yet approved has only the request; approval then
    # attaches it to the server, so staff see what the contact's browser saw.
    # Both cascade: a check says something only about what it was made for.
    server = models.ForeignKey(
        DicomWebServer,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="connectivity_checks",
    )
    onboarding_request = models.ForeignKey(
        "OnboardingRequest",
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="connectivity_checks",
    )
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    source = models.CharField(max_length=16, choices=Source.choices)
    origin = models.CharField(max_length=200)
    outcome = models.CharField(max_length=32, choices=CheckOutcome.choices)
    findings = models.JSONField(default=list, blank=True)

    class Meta:
        verbose_name = "connectivity check"
        ordering = ["-created_at", "-pk"]
        indexes = [
            models.Index(
                fields=["server", "-created_at"], name="check_server_recent_idx"
            )
        ]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(server__isnull=False)
                | models.Q(onboarding_request__isnull=False),
                name="check_has_server_or_request",
                violation_error_message=(
                    "A connectivity check is made for a server or an onboarding "
                    "request."
                ),
            )
        ]

    def __str__(self) -> str:
        return f"{self.get_outcome_display()} from {self.origin} ({self.source})"

    @property
    def is_ok(self) -> bool:
        return self.outcome == CheckOutcome.OK

    @property
    def shown_findings(self) -> list[dict[str, str]]:
        """The findings, safe to render even if a stored row holds odd text."""
        return storable_findings(self.findings)

    @property
    def shown_origin(self) -> str:
        return inputs.escaped(self.origin)

    def to_dict(self) -> dict[str, Any]:
        """The REST API's shape of a check (contract)."""
        return {
            "id": self.pk,
            "created_at": self.created_at.isoformat().replace("+00:00", "Z"),
            "source": self.source,
            "origin": self.shown_origin,
            "outcome": self.outcome,
            "findings": self.shown_findings,
        }


class ApiKeyManager(models.Manager["ApiKey"]):
    def create_key(
        self, name: str, scope: str, expires_at: Any = None
    ) -> tuple[ApiKey, str]:
        """A new key and its raw value: the only time the raw value exists."""
        key = self.model(name=name, scope=scope, expires_at=expires_at)
        raw = key.set_new_key()
        key.full_clean()
        key.save()
        return key, raw

    def for_raw_key(self, raw: str) -> ApiKey | None:
        """The usable key (not revoked, not expired) for a raw value, or None.

        One indexed query by prefix; the hash is compared in constant time.
        """
        prefix, dot, _secret = raw.partition(".")
        if not dot or not prefix or len(raw) > 200:
            return None
        key = self.filter(prefix=prefix).first()
        if key is None or not hmac.compare_digest(key.hashed_key, ApiKey.hash(raw)):
            return None
        return key if key.is_usable() else None


class ApiKey(models.Model):
    """A named credential for a program. Only a hash of the key is stored."""

    class Scope(models.TextChoices):
        ACCESS = "access", "access: may ask the access question"
        MANAGE = "manage", "manage: may also change the registry"

    # How often last_used_at is written: not on every request (the access
    # question is the hot path), but often enough to spot unused keys.
    LAST_USED_RESOLUTION = timedelta(minutes=1)

    name = models.CharField(
        max_length=100,
        unique=True,
        help_text="Who uses it, e.g. uploader-production. Named in the audit "
        "history as api-key:<name>.",
    )
    scope = models.CharField(max_length=16, choices=Scope.choices)
    prefix = models.CharField(max_length=16, unique=True, editable=False)
    hashed_key = models.CharField(max_length=64, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(
        null=True, blank=True, help_text="Empty: never expires."
    )
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)

    objects = ApiKeyManager()

    class Meta:
        verbose_name = "API key"
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @staticmethod
    def hash(raw: str) -> str:
        # The key is 256 random bits: a fast hash cannot be brute-forced, and
        # a slow one would cost every API call.
        return hashlib.sha256(raw.encode()).hexdigest()

    def set_new_key(self) -> str:
        """Give this (unsaved) row a new key; answers the raw key, which is
        never stored: show it to the user once."""
        self.prefix = secrets.token_hex(6)
        raw = f"{self.prefix}.{secrets.token_urlsafe(32)}"
        self.hashed_key = ApiKey.hash(raw)
        return raw

    @property
    def audit_label(self) -> str:
        return f"api-key:{self.name}"

    def is_usable(self) -> bool:
        if self.revoked_at is not None:
            return False
        return self.expires_at is None or self.expires_at > timezone.now()

    def revoke(self) -> None:
        if self.revoked_at is None:
            self.revoked_at = timezone.now()
            self.save(update_fields=["revoked_at"])

    def record_use(self) -> None:
        """Note the time of use, at most once per LAST_USED_RESOLUTION."""
        now = timezone.now()
        if self.last_used_at and now - self.last_used_at < self.LAST_USED_RESOLUTION:
            return
        self.last_used_at = now
        ApiKey.objects.filter(pk=self.pk).update(last_used_at=now)


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
    confirmed_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="When the contact opened the emailed link and confirmed; "
        "only then is the request reviewed.",
    )
    confirmation_sent_at = models.DateTimeField(null=True, blank=True)
    confirmation_sends = models.PositiveSmallIntegerField(default=0)
    server_name = models.CharField(max_length=200)
    qido_url = models.CharField(
        "QIDO URL", max_length=MAX_URL_LENGTH, validators=[normalize_dicomweb_url]
    )
    wado_url = models.CharField(
        "WADO URL", max_length=MAX_URL_LENGTH, validators=[normalize_dicomweb_url]
    )
    cors_mode = models.CharField(
        "how CORS is met",
        max_length=16,
        choices=DicomWebServer.CorsMode.choices,
        default=DicomWebServer.CorsMode.DIRECT,
    )
    needs_credentials = models.BooleanField("needs browser credentials", default=False)
    notes = models.TextField(blank=True)
    emails_to_add = models.JSONField(default=list, blank=True)
    emails_to_remove = models.JSONField(default=list, blank=True)

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
