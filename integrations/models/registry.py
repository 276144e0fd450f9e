"""The registry: institutions, their DICOMweb servers and approved users."""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, models
from django.db.models import Q
from django.db.models.functions import Lower, Now
from simple_history.models import HistoricalRecords

from integrations import audit
from integrations.validators import (
    MAX_EMAIL_LENGTH,
    MAX_URL_LENGTH,
    dicomweb_url_validator,
    email_identity,
    email_key,
    normalize_dicomweb_url,
    normalize_email,
    normalize_pacsbin_proxy,
    printable,
    proxy_error_messages,
    split_dicomweb_url,
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


def _refused_by(model: type[models.Model], error: ValidationError) -> str | None:
    """Which of ``_DUPLICATES``' constraints raised ``error`` in
    ``Model.validate_constraints``, if one did: a constraint on expressions
    says its violation message, one on fields the ``unique_error_message`` of
    its fields."""
    params = error.params or {}
    for constraint in model._meta.constraints:
        if constraint.name not in _DUPLICATES:
            continue
        fields = getattr(constraint, "fields", ())
        if fields:
            if tuple(params.get("unique_check", ())) == tuple(fields):
                return constraint.name
        elif error.message == constraint.get_violation_error_message():
            return constraint.name
    return None


@contextmanager
def duplicates_named(instance: models.Model) -> Iterator[None]:
    """Let ``Model.validate_constraints`` check every constraint, and replace
    the generic refusal of each uniqueness rule in ``_DUPLICATES`` by its
    message naming the duplicate value, under the field it is about."""
    try:
        yield
    except ValidationError as exc:
        errors: dict[str, list[ValidationError]] = {}
        for field, messages in exc.error_dict.items():
            for error in messages:
                constraint = _refused_by(type(instance), error)
                if constraint is None:
                    errors.setdefault(field, []).append(error)
                    continue
                value = getattr(instance, _DUPLICATES[constraint][0])
                errors = duplicate_error(constraint, value).update_error_dict(errors)
        raise ValidationError(errors) from None


def _history(excluded_fields: list[str] | None = None) -> HistoricalRecords:
    return HistoricalRecords(
        bases=[audit.AuditedHistory],
        get_user=audit.history_user,
        excluded_fields=excluded_fields,
    )


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

    def validate_constraints(self, exclude: Collection[str] | None = None) -> None:
        with duplicates_named(self):
            super().validate_constraints(exclude=exclude)


class DicomWebServerQuerySet(models.QuerySet["DicomWebServer"]):
    def approved_for(
        self, email: str, *, active_only: bool = True
    ) -> DicomWebServerQuerySet:
        """The servers an (already normalised) email is approved for, ordered
        by institution then name. Only active ones unless ``active_only`` is
        False. The access question's one definition: the API, the admin's
        "What does this email see?" and the benchmark all ask it here."""
        # One filter() call: the key and the expiry are tested on the same
        # approval row (one join). Now() is the database's clock, so the
        # compiled statement stays the same (access.rows runs it as is).
        servers = self.filter(
            Q(approved_users__email_key=email_key(email)),
            Q(approved_users__expires_at__isnull=True)
            | Q(approved_users__expires_at__gt=Now()),
        )
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
        DIMSE_PROXY = (
            "dimse_proxy",
            "Pacsbin's proxy (for a DIMSE-only archive, or in front of a DICOMweb one)",
        )

    institution = models.ForeignKey(
        Institution, on_delete=models.PROTECT, related_name="servers"
    )
    name = models.CharField(
        "display name", max_length=200, help_text="Unique within the institution."
    )
    qido_url = models.CharField(
        "QIDO URL", max_length=MAX_URL_LENGTH, validators=[dicomweb_url_validator]
    )
    wado_url = models.CharField(
        "WADO URL", max_length=MAX_URL_LENGTH, validators=[dicomweb_url_validator]
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
    # Only with cors_mode "dimse_proxy", and then required (see
    # ``check_pacsbin_proxy``); the shape is validators.normalize_pacsbin_proxy.
    pacsbin_proxy = models.JSONField(
        "Pacsbin's proxy settings",
        null=True,
        blank=True,
        default=None,
        help_text="How Pacsbin's proxy reaches the archive: DIMSE (archive AE "
        "title, host, port; the proxy's AE title and DIMSE port) or DICOMweb "
        "(forwarding URLs). Only for servers whose CORS is met by Pacsbin's proxy.",
    )
    edge_enforced = models.BooleanField(
        "enforced at the archive's edge",
        default=False,
        help_text="The archive's reverse proxy refuses every DICOMweb request "
        "without a registry token for a user approved here (README, The gate). "
        "The access answer then carries a token for this server.",
    )
    # The edge key (``<server id>.<secret>``) is shown once; only its hash is
    # kept, and not in the history (its creation time is, so every rotation
    # is audited without the hash leaving this table).
    edge_key_hash = models.CharField(max_length=64, blank=True, editable=False)
    edge_key_created_at = models.DateTimeField(
        "edge key created", null=True, blank=True, editable=False
    )
    notes = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = DicomWebServerQuerySet.as_manager()

    # What a person or a program sets on a server (beside its institution): the
    # admin form, the API and the export all list these, in this order.
    EDITABLE_FIELDS = (
        "name",
        "qido_url",
        "wado_url",
        "status",
        "cors_mode",
        "needs_credentials",
        "pacsbin_proxy",
        "edge_enforced",
        "notes",
    )
    history = _history(excluded_fields=["edge_key_hash"])

    class Meta:
        verbose_name = "DICOMweb server"
        ordering = [Lower("institution__name"), Lower("name")]
        constraints = [
            models.UniqueConstraint(
                "institution",
                Lower("name"),
                name=SERVER_NAME_UNIQUE,
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
        try:
            self.pacsbin_proxy = check_pacsbin_proxy(
                self.cors_mode, self.qido_url, self.wado_url, self.pacsbin_proxy
            )
        except ValidationError as exc:
            errors = exc.update_error_dict(errors)
        if errors:
            raise ValidationError(errors)

    def validate_constraints(self, exclude: Collection[str] | None = None) -> None:
        with duplicates_named(self):
            super().validate_constraints(exclude=exclude)


def check_pacsbin_proxy(
    cors_mode: str, qido_url: str, wado_url: str, settings: Any
) -> dict[str, Any] | None:
    """The proxy settings a server (or a request for one) keeps, normalised:
    required when CORS is met by Pacsbin's proxy; otherwise checked by the
    rule all the same, then not kept (None). Behind the proxy the
    QIDO and WADO URLs are the proxy's public origin (its routes are at the
    root): one origin, no path. ValidationError keyed by field, naming the
    value. The one rule for every path in (admin, API, form, import,
    approval)."""
    proxied = cors_mode == DicomWebServer.CorsMode.DIMSE_PROXY
    errors: dict[str, list[ValidationError]] = {}
    normal = None
    try:
        normal = normalize_pacsbin_proxy(settings)
    except ValidationError as exc:
        errors["pacsbin_proxy"] = [
            ValidationError(message, code="invalid")
            for message in proxy_error_messages(exc)
        ]
    if proxied and settings is None:
        errors["pacsbin_proxy"] = [
            ValidationError(
                "A server whose CORS is met by Pacsbin's proxy needs the proxy's "
                "settings: how it reaches the archive (DIMSE: the archive's AE "
                "title, host and port, the proxy's AE title and DIMSE port; or "
                "DICOMweb: the forwarding URLs).",
                # Not "required": a form would swap in its own "This field is
                # required." for the field this error lands on.
                code="proxy_settings_required",
            )
        ]
    if proxied:
        errors.update(_proxy_origin_errors(qido_url, wado_url))
    if errors:
        raise ValidationError(errors)
    # Valid settings on a server not behind the proxy are not kept: they
    # apply only there (history keeps what was before).
    return normal if proxied else None


def _proxy_origin_errors(qido_url: str, wado_url: str) -> dict[str, list[Any]]:
    """With Pacsbin's proxy, the uploader's URLs are the proxy's origin."""
    errors: dict[str, list[Any]] = {}
    for field, label, url in (
        ("qido_url", "QIDO URL", qido_url),
        ("wado_url", "WADO URL", wado_url),
    ):
        try:
            parts = split_dicomweb_url(url)
        except ValidationError:
            continue  # the URL rule has said why
        if parts.path:
            errors[field] = [
                ValidationError(
                    "Pacsbin's proxy answers at the root of its address, so the "
                    "%(label)s is the proxy's public origin, %(origin)s, without "
                    "“%(path)s”.",
                    code="proxy_path",
                    params={
                        "label": label,
                        "origin": parts.origin,
                        "path": printable(parts.path, 80),
                    },
                )
            ]
    if not errors:
        try:
            same = normalize_dicomweb_url(qido_url) == normalize_dicomweb_url(wado_url)
        except ValidationError:
            same = True
        if not same:
            errors["wado_url"] = [
                ValidationError(
                    "Pacsbin's proxy answers searches and retrievals at one "
                    "address: the WADO URL must be the QIDO URL (%(qido)s).",
                    code="proxy_origin",
                    params={"qido": printable(qido_url, 80)},
                )
            ]
    return errors


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
    # Null: never. Past it the approval is gone from the access answer (the
    # same one query) and refused by the gate.
    expires_at = models.DateTimeField(null=True, blank=True, help_text="Empty: never.")
    # When the week-before notice about this expiry was mailed (expiry.py);
    # cleared whenever expires_at changes, so a new end date is told again.
    # Not history: a mail sent is no change to who may see images.
    expiry_notified_at = models.DateTimeField(null=True, blank=True, editable=False)

    history = _history(excluded_fields=["expiry_notified_at"])

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
        indexes = [
            models.Index(fields=["email_key"], name="approved_user_email_idx"),
            # The week-before notice's scan and the admin's expiry filter.
            models.Index(fields=["expires_at"], name="approved_user_expiry_idx"),
        ]

    def __str__(self) -> str:
        return self.email

    def clean(self) -> None:
        try:
            self.email, self.email_key = email_identity(self.email)
        except ValidationError as exc:
            # Under its field: then the key it failed to give is not checked.
            raise ValidationError({"email": exc.error_list}) from None

    def validate_constraints(self, exclude: Collection[str] | None = None) -> None:
        # clean() derives email_key from the email, so the key is checked
        # exactly when the email is: a ModelForm excludes the key (it is on no
        # form) yet validates the email; a bad email leaves no key to check.
        exclude = set(exclude or ())
        if "email" in exclude:
            exclude.add("email_key")
        else:
            exclude.discard("email_key")
        with duplicates_named(self):
            super().validate_constraints(exclude=exclude)
