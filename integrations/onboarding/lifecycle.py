"""Submitting, approving and rejecting onboarding requests.

Approval is the only way a submission reaches the registry, and it is one
named function running in one transaction: either the institution, server and
approvals are all written (audited under the reviewer's name), or nothing is.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from integrations import audit, expiry, registry
from integrations.expiry import Expiry
from integrations.models import (
    SERVER_NAME_UNIQUE,
    ApprovedUser,
    ConnectivityCheck,
    DicomWebServer,
    Institution,
    OnboardingRequest,
    integrity_error_as_validation,
)
from integrations.onboarding import links, notify
from integrations.validators import (
    describe_pacsbin_proxy,
    email_key,
    normalize_dicomweb_url,
    printable,
    validate_single_line,
)


class ReviewError(Exception):
    """The request cannot be approved or rejected as asked; nothing was written."""

    def __init__(self, message: str) -> None:
        self.message = message
        super().__init__(message)


@dataclass
class ApprovalResult:
    onboarding_request: OnboardingRequest
    institution: Institution
    server: DicomWebServer
    created_institution: bool = False
    created_server: bool = False
    changed_fields: list[str] = field(default_factory=list)
    added: list[str] = field(default_factory=list)
    existing: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)

    def summary(self) -> str:
        parts = []
        if self.created_institution:
            parts.append(f"created institution “{self.institution}”")
        if self.created_server:
            parts.append(
                f"created server “{self.server}” ({self.server.get_status_display()})"
            )
        if self.changed_fields:
            parts.append(f"changed {', '.join(self.changed_fields)}")
        parts.append(f"approved {len(self.added)} new email(s)")
        if self.existing:
            parts.append(f"{len(self.existing)} already approved")
        if self.removed:
            parts.append(f"removed {len(self.removed)} email(s)")
        return f"{self.onboarding_request.reference} approved: " + "; ".join(parts)


def baseline_of(server: DicomWebServer) -> dict[str, Any]:
    """The live values an update starts from, with the change stamps that tell
    at approval time whether someone changed them meanwhile."""
    institution = server.institution
    return {
        "institution_updated_at": institution.updated_at.isoformat(),
        "server_updated_at": server.updated_at.isoformat(),
        **{
            f"{target}.{live}": getattr(
                institution if target == "institution" else server, live
            )
            for target, live in OnboardingRequest.LIVE_FIELDS.values()
        },
    }


def contact_address_on_record(
    server: DicomWebServer, submitted_from: OnboardingRequest | None
) -> str:
    """Where a change to ``server`` is confirmed: the institution's contact,
    else the address that confirmed the request the change was sent from.
    Never what the change itself says: whoever holds the status link may
    type any address there."""
    if server.institution.contact_email:
        return server.institution.contact_email
    if submitted_from is not None and submitted_from.is_confirmed:
        return submitted_from.confirmation_address
    return ""


def new_contact_of(onboarding_request: OnboardingRequest) -> str:
    """The contact address a change names when it is not the address that
    confirms the change ('' otherwise): typed by whoever holds the status
    link, it must confirm a link of its own before it is anyone's contact."""
    r = onboarding_request
    if not r.confirmation_address or not r.contact_email:
        return ""
    try:
        same = email_key(r.contact_email) == email_key(r.confirmation_address)
    except ValidationError:
        same = False
    return "" if same else r.contact_email


def submit_request(
    data: dict[str, Any],
    *,
    client_address: str | None,
    site_url: str,
    server: DicomWebServer | None = None,
    submitted_from: OnboardingRequest | None = None,
) -> OnboardingRequest:
    """Store a submission (a change to ``server`` when given) and email the
    contact a confirmation link. Staff hear of it only once it is confirmed;
    nothing is written to the registry itself."""
    kind = OnboardingRequest.Kind.UPDATE if server else OnboardingRequest.Kind.NEW
    with transaction.atomic():
        onboarding_request = OnboardingRequest(
            kind=kind,
            reference=links.new_reference(),
            token=links.new_token(),
            client_address=client_address or None,
            submitted_from=submitted_from,
            **data,
        )
        onboarding_request.confirmation_address = onboarding_request.contact_email
        if server is not None:
            onboarding_request.server = server
            onboarding_request.institution = server.institution
            onboarding_request.institution_name = server.institution.name
            onboarding_request.baseline = baseline_of(server)
            onboarding_request.confirmation_address = contact_address_on_record(
                server, submitted_from
            )
            onboarding_request.new_contact_address = new_contact_of(onboarding_request)
        if onboarding_request.confirmation_address:
            onboarding_request.confirmation_sent_at = timezone.now()
            onboarding_request.confirmation_sends = 1
        onboarding_request.save()
        if onboarding_request.confirmation_address:
            transaction.on_commit(
                lambda: notify.confirmation_requested(
                    onboarding_request, site_url, what_it_does(onboarding_request)
                )
            )
    return onboarding_request


class ConfirmationError(Exception):
    """The request cannot be confirmed, or its link sent again, as asked."""

    def __init__(self, message: str) -> None:
        self.message = message
        super().__init__(message)


def expired_message(onboarding_request: OnboardingRequest) -> str:
    return (
        f"Request {onboarding_request.reference} was not confirmed within "
        f"{settings.ONBOARDING_CONFIRM_HOURS} hours and has expired; nobody "
        "will review it. Please send it again."
    )


class Confirming:
    """Which link a confirmation came through."""

    ADDRESS = "address"  # the request's confirmation address
    NEW_CONTACT = "new_contact"  # the new contact address a change names


def confirm_request(
    onboarding_request: OnboardingRequest,
    site_url: str,
    via: str = Confirming.ADDRESS,
) -> bool:
    """Someone opened an emailed link and pressed the button: the address it
    was sent to is confirmed. When that was the last address the request
    needs (a change naming a new contact needs that one too, mailed only once
    the change itself is confirmed), the request enters the review queue and
    staff are told. True when this call confirmed something, False when it
    was confirmed already (nobody is mailed twice)."""
    with transaction.atomic():
        r = OnboardingRequest.objects.select_for_update().get(pk=onboarding_request.pk)
        if r.is_confirmed:
            return False
        if r.confirmation_expired:
            raise ConfirmationError(expired_message(r))
        now = timezone.now()
        if via == Confirming.NEW_CONTACT:
            if r.new_contact_confirmed_at or not r.is_address_confirmed:
                return False
            r.new_contact_confirmed_at = now
        else:
            if r.is_address_confirmed:
                return False
            r.address_confirmed_at = now
            if r.awaits_new_contact:
                r.confirmation_sent_at = now
                r.confirmation_sends += 1
                transaction.on_commit(lambda: notify.new_contact_requested(r, site_url))
        if not r.awaits_new_contact:
            r.confirmed_at = now
            transaction.on_commit(lambda: notify.submission_received(r, site_url))
        r.save(
            update_fields=[
                "address_confirmed_at",
                "new_contact_confirmed_at",
                "confirmed_at",
                "confirmation_sent_at",
                "confirmation_sends",
            ]
        )
    for name in ("address_confirmed_at", "new_contact_confirmed_at", "confirmed_at"):
        setattr(onboarding_request, name, getattr(r, name))
    return True


# A contact waiting for the mail may press "send it again" once or twice; more
# than a few sends of one request is someone using us to mail a stranger.
RESEND_INTERVAL = timedelta(minutes=5)
MAX_CONFIRMATION_SENDS = 5


def resend_confirmation(onboarding_request: OnboardingRequest, site_url: str) -> None:
    """Email the confirmation link again, at most every RESEND_INTERVAL and
    MAX_CONFIRMATION_SENDS times in all."""
    with transaction.atomic():
        r = OnboardingRequest.objects.select_for_update().get(pk=onboarding_request.pk)
        if r.is_confirmed:
            raise ConfirmationError(f"{r.reference} is already confirmed.")
        if r.confirmation_expired:
            raise ConfirmationError(expired_message(r))
        if not r.confirmation_address:
            raise ConfirmationError(
                "There is no contact address on record to confirm this change; "
                f"please write to us quoting {r.reference}."
            )
        if r.confirmation_sends >= MAX_CONFIRMATION_SENDS:
            raise ConfirmationError(
                f"The confirmation email was already sent {r.confirmation_sends} "
                "times; it is not sent again. Check your spam folder, or write "
                f"to us quoting {r.reference}."
            )
        now = timezone.now()
        if r.confirmation_sent_at and now - r.confirmation_sent_at < RESEND_INTERVAL:
            minutes = int(RESEND_INTERVAL.total_seconds() // 60)
            raise ConfirmationError(
                f"The confirmation email was sent less than {minutes} minutes "
                "ago; mail can take a few minutes to arrive. Try again later."
            )
        r.confirmation_sent_at = now
        r.confirmation_sends += 1
        r.save(update_fields=["confirmation_sent_at", "confirmation_sends"])
        # Whichever link the request waits for: the new contact's once the
        # change itself is confirmed.
        if r.is_address_confirmed:
            transaction.on_commit(lambda: notify.new_contact_requested(r, site_url))
        else:
            transaction.on_commit(
                lambda: notify.confirmation_requested(r, site_url, what_it_does(r))
            )


def proxy_urls_refusal(onboarding_request: OnboardingRequest) -> str:
    """Why this request cannot take a reverse proxy's URLs from its status
    page ('' when it can): only a new server's request, before review, whose
    archive speaks DICOMweb itself (behind Pacsbin's proxy the URLs are the
    proxy's from the start). After review, a change does it."""
    r = onboarding_request
    if r.kind != OnboardingRequest.Kind.NEW:
        return "A change's URLs are given in the change itself."
    if r.confirmation_expired:
        return expired_message(r)
    if r.status != OnboardingRequest.Status.SUBMITTED:
        return (
            f"{r.reference} was already {r.get_status_display().lower()}: send "
            "the proxy's URLs with “Send a change” instead."
        )
    if r.cors_mode == DicomWebServer.CorsMode.DIMSE_PROXY:
        return (
            "This request's URLs are already those of Pacsbin's proxy; send a "
            "change once it is approved to give others."
        )
    return ""


def give_proxy_urls(
    onboarding_request: OnboardingRequest, qido_url: str, wado_url: str
) -> OnboardingRequest:
    """The contact put a reverse proxy in front of the archive before review:
    the request's URLs become the proxy's (what approval activates) and its
    CORS is met by that proxy; the archive's own URLs are kept, the first
    ones given, for the reviewer and for the configurations. ``qido_url`` and
    ``wado_url`` are normalised already (``ProxyUrlsForm``). ReviewError when
    the request no longer takes them; nothing is written then."""
    try:
        qido_url, wado_url = map(normalize_dicomweb_url, (qido_url, wado_url))
    except ValidationError as exc:
        raise ReviewError(_validation_message(exc)) from None
    with transaction.atomic():
        r = OnboardingRequest.objects.select_for_update().get(pk=onboarding_request.pk)
        refusal = proxy_urls_refusal(r)
        if refusal:
            raise ReviewError(refusal)
        if not r.archive_qido_url:
            r.archive_qido_url, r.archive_wado_url = r.qido_url, r.wado_url
        r.qido_url, r.wado_url = qido_url, wado_url
        r.cors_mode = DicomWebServer.CorsMode.REVERSE_PROXY
        r.proxy_urls_given_at = timezone.now()
        r.save(
            update_fields=[
                "archive_qido_url",
                "archive_wado_url",
                "qido_url",
                "wado_url",
                "cors_mode",
                "proxy_urls_given_at",
            ]
        )
    return r


def _lock_open(onboarding_request: OnboardingRequest) -> OnboardingRequest:
    locked = OnboardingRequest.objects.select_for_update().get(pk=onboarding_request.pk)
    if not locked.is_confirmed:
        raise ReviewError(
            f"{locked.reference} cannot be approved or rejected: its contact has "
            "not confirmed their email address yet (an unconfirmed request "
            f"expires {settings.ONBOARDING_CONFIRM_HOURS} hours after it was "
            "sent). Nothing was changed."
        )
    if locked.status != OnboardingRequest.Status.SUBMITTED:
        who = locked.reviewer.get_username() if locked.reviewer else "someone"
        when = (
            timezone.localtime(locked.reviewed_at).strftime("%Y-%m-%d %H:%M")
            if locked.reviewed_at
            else ""
        )
        raise ReviewError(
            f"{locked.reference} was already {locked.get_status_display().lower()} "
            f"by {who} {when}; nothing was changed."
        )
    return locked


def _validation_message(exc: ValidationError) -> str:
    return " ".join(exc.messages)


def institution_named(name: str) -> Institution | None:
    return Institution.objects.filter(name__iexact=name).first()


def name_clash(onboarding_request: OnboardingRequest, name: str = "") -> str:
    """Why a new server's name cannot be used at its institution ('' if it
    can): said on the review page before Approve, where staff can rename it."""
    r = onboarding_request
    name = name or r.server_name
    institution = institution_named(r.institution_name)
    if institution is None or r.kind != OnboardingRequest.Kind.NEW:
        return ""
    if not institution.servers.filter(name__iexact=name).exists():
        return ""
    return (
        f"{institution.name} already has a server named “{name}”: give this one "
        "another name before approving (the contact is told the name it got)."
    )


def _renamed(onboarding_request: OnboardingRequest, server_name: str | None) -> None:
    """Staff's correction of a new server's name, checked as the form checks it."""
    if server_name is None:
        return
    name = " ".join(server_name.split())
    if not name:
        raise ReviewError("Give the server a name; nothing was changed.")
    try:
        validate_single_line(name)
    except ValidationError as exc:
        raise ReviewError(f"{exc.messages[0]} Nothing was changed.") from None
    if len(name) > 200:
        raise ReviewError(
            f"“{printable(name, 60)}” is longer than 200 characters; "
            "nothing was changed."
        )
    onboarding_request.server_name = name


def _create_live_rows(
    onboarding_request: OnboardingRequest, activate: bool
) -> tuple[Institution, DicomWebServer, bool]:
    r = onboarding_request
    institution = institution_named(r.institution_name)
    created_institution = institution is None
    if institution is None:
        institution = Institution(name=r.institution_name, **r.institution_values())
        try:
            institution.full_clean()
        except ValidationError as exc:
            raise ReviewError(_validation_message(exc)) from None
        institution.save()
    notes = r.notes
    if r.gave_proxy_urls:
        notes = (
            f"{notes}\n\nBehind a reverse proxy (its URLs were given before "
            f"review); the archive itself: QIDO {r.archive_qido_url}, WADO "
            f"{r.archive_wado_url}."
        ).strip()
    server = DicomWebServer(
        institution=institution,
        **r.server_values(),
        notes=notes,
        status=DicomWebServer.Status.ACTIVE
        if activate
        else DicomWebServer.Status.PENDING,
    )
    try:
        server.full_clean()
    except ValidationError as exc:
        raise ReviewError(_validation_message(exc)) from None
    server.save()
    return institution, server, created_institution


def stale_reason(onboarding_request: OnboardingRequest) -> str:
    """Why an update no longer applies cleanly to the live rows ('' if it does)."""
    r = onboarding_request
    if r.server is None:
        return "The server this change was for has been deleted since it was sent."
    baseline = r.baseline or {}
    if baseline.get("server_updated_at") != r.server.updated_at.isoformat():
        return f"The server “{r.server}” was changed after this request was sent."
    if (
        baseline.get("institution_updated_at")
        != r.server.institution.updated_at.isoformat()
    ):
        return (
            f"The institution “{r.server.institution}” was changed after this "
            "request was sent."
        )
    return ""


def _apply_update(
    onboarding_request: OnboardingRequest,
) -> tuple[Institution, DicomWebServer, list[Difference]]:
    r = onboarding_request
    if r.server_id:
        # Lock the live rows so nobody edits them between the check and the write.
        r.server = (
            DicomWebServer.objects.select_for_update()
            .select_related("institution")
            .filter(pk=r.server_id)
            .first()
        )
    if r.server is not None:
        Institution.objects.select_for_update().filter(
            pk=r.server.institution_id
        ).exists()
    reason = stale_reason(r)
    if reason:
        raise ReviewError(
            f"{reason} Nothing was applied. Reject this request and ask the "
            "contact to send the change again from their status link, which "
            "shows the current values."
        )
    server = r.server
    assert server is not None
    institution = server.institution
    changed = [d for d in differences(r) if d.changed]
    if r.awaits_new_contact and any(d.field == "contact_email" for d in changed):
        raise ReviewError(
            f"{r.new_contact_address} has not confirmed the link sent to it, so "
            "it cannot become the contact on record; nothing was applied."
        )
    for d in changed:
        setattr(institution if d.row == "institution" else server, d.field, d.requested)
    try:
        institution.full_clean()
        server.full_clean()
    except ValidationError as exc:
        raise ReviewError(_validation_message(exc)) from None
    # Saved only when changed: an update that only adds emails must not make a
    # second pending update look stale.
    if any(d.row == "institution" for d in changed):
        institution.save()
    if any(d.row == "server" for d in changed):
        server.save()
    return institution, server, changed


_PERMISSION_LABELS = {
    "integrations.add_institution": "add institutions",
    "integrations.change_institution": "change institutions",
    "integrations.add_dicomwebserver": "add DICOMweb servers",
    "integrations.change_dicomwebserver": "change DICOMweb servers",
    "integrations.add_approveduser": "add approved users",
    "integrations.delete_approveduser": "delete approved users",
    "integrations.change_onboardingrequest": "change onboarding requests",
}


def permissions_needed(onboarding_request: OnboardingRequest) -> list[str]:
    """The model permissions approving this request needs: those the same
    change made by hand in the admin would, and the one to decide requests."""
    r = onboarding_request
    needed = []
    if r.kind == OnboardingRequest.Kind.NEW:
        if institution_named(r.institution_name) is None:
            needed.append("integrations.add_institution")
        else:
            needed.append("integrations.change_institution")
        needed.append("integrations.add_dicomwebserver")
    else:
        changed = {d.row for d in differences(r) if d.changed}
        if "institution" in changed:
            needed.append("integrations.change_institution")
        if "server" in changed:
            needed.append("integrations.change_dicomwebserver")
    if r.emails_to_add:
        needed.append("integrations.add_approveduser")
    if r.emails_to_remove:
        needed.append("integrations.delete_approveduser")
    needed.append("integrations.change_onboardingrequest")
    return needed


def missing_permissions(onboarding_request: OnboardingRequest, user: Any) -> list[str]:
    """What ``user`` may not do of what approving needs, in words ([] if
    nothing is missing)."""
    return [
        _PERMISSION_LABELS[permission]
        for permission in permissions_needed(onboarding_request)
        if not user.has_perm(permission)
    ]


def requested_expiry(onboarding_request: OnboardingRequest) -> Expiry | None:
    """The end the request gives the emails it adds: through its "approved
    until" day (None: it names no end, and existing approvals keep theirs).
    ReviewError when that day has passed while the request waited."""
    day = onboarding_request.emails_end_on
    if day is None or not onboarding_request.emails_to_add:
        return None
    at = expiry.end_of_day(day)
    if at <= timezone.now():
        raise ReviewError(
            f"The request asks for access until {day:%Y-%m-%d}, which has "
            "passed; nothing was changed. Reject it with a reason (the contact "
            "can ask again with a later day)."
        )
    return Expiry(at)


def approve_request(
    onboarding_request: OnboardingRequest,
    reviewer: Any,
    *,
    activate: bool = True,
    site_url: str = "",
    check_permissions: bool = False,
    server_name: str | None = None,
) -> ApprovalResult:
    """Turn a submitted request into live registry rows, all or nothing.

    A new server starts ``active`` (the staffer's approval is the gate) unless
    ``activate`` is False; an update never changes a server's status. With
    ``check_permissions``, the reviewer must hold every model permission the
    change needs (judged under the lock, against the rows it will write).
    ``server_name`` is staff's correction of a new server's name (a clash
    with a server already at the institution, shown on the review page).
    """
    try:
        return _approve(
            onboarding_request,
            reviewer,
            activate,
            site_url,
            check_permissions,
            server_name,
        )
    except IntegrityError as exc:
        # Someone created the same institution or server between our check
        # and our insert; the transaction was rolled back whole.
        r = onboarding_request
        text = str(exc)
        name = r.server_name if SERVER_NAME_UNIQUE in text else r.institution_name
        error = integrity_error_as_validation(exc, {"name": name})
        if error is None:
            raise
        raise ReviewError(
            f"{_validation_message(error)} It was created while this approval "
            "ran; nothing was written. Open the request again to review it."
        ) from None


def _approve(
    onboarding_request: OnboardingRequest,
    reviewer: Any,
    activate: bool,
    site_url: str,
    check_permissions: bool,
    server_name: str | None = None,
) -> ApprovalResult:
    with transaction.atomic(), audit.acting_as(user=reviewer):
        r = _lock_open(onboarding_request)
        if r.kind == OnboardingRequest.Kind.NEW:
            _renamed(r, server_name)
        missing = missing_permissions(r, reviewer) if check_permissions else []
        if missing:
            raise ReviewError(
                f"Approving {r.reference} needs the permission to "
                f"{', '.join(missing)}; nothing was changed."
            )
        ends = requested_expiry(r)
        if r.kind == OnboardingRequest.Kind.NEW:
            institution, server, created_institution = _create_live_rows(r, activate)
            result = ApprovalResult(
                r,
                institution,
                server,
                created_institution=created_institution,
                created_server=True,
            )
        else:
            institution, server, changed = _apply_update(r)
            result = ApprovalResult(
                r, institution, server, changed_fields=[d.label for d in changed]
            )
            old_contact = next(
                (d.live for d in changed if d.field == "contact_email" and d.live), ""
            )
            if old_contact:
                # The old contact hears that the registry now writes elsewhere.
                transaction.on_commit(
                    lambda: notify.contact_replaced(r, old_contact, site_url)
                )
        added = registry.add_approved_users(server, r.emails_to_add, ends)
        result.added, result.existing = added.added, added.existing
        result.removed = registry.remove_approved_users(server, r.emails_to_remove)
        r.status = OnboardingRequest.Status.APPROVED
        r.reviewer = reviewer
        r.reviewed_at = timezone.now()
        r.institution = institution
        r.server = server
        r.save()
        # What the contact's browser saw before approval becomes part of the
        # server's check history, in the same transaction as everything else.
        r.connectivity_checks.filter(server__isnull=True).update(server=server)
        transaction.on_commit(lambda: notify.decision_made(r, site_url))
    return result


def reject_request(
    onboarding_request: OnboardingRequest,
    reviewer: Any,
    reason: str,
    *,
    site_url: str = "",
) -> OnboardingRequest:
    reason = reason.strip()
    if not reason:
        raise ReviewError(
            "Give a reason: the contact is told why, so they can fix and resend."
        )
    with transaction.atomic():
        r = _lock_open(onboarding_request)
        r.status = OnboardingRequest.Status.REJECTED
        r.reviewer = reviewer
        r.reviewed_at = timezone.now()
        r.reason = reason
        r.save()
        transaction.on_commit(lambda: notify.decision_made(r, site_url))
    return r


@dataclass(frozen=True)
class Difference:
    label: str
    live: Any
    requested: Any
    row: str = ""  # "institution" or "server"
    field: str = ""  # the live row's field

    @property
    def changed(self) -> bool:
        return self.live != self.requested

    @property
    def shown_live(self) -> Any:
        return _shown(self.field, self.live)

    @property
    def shown_requested(self) -> Any:
        return _shown(self.field, self.requested)


def _shown(field: str, value: Any) -> Any:
    """A value as the reviewer reads it (the proxy settings in words)."""
    return describe_pacsbin_proxy(value) if field == "pacsbin_proxy" else value


def differences(onboarding_request: OnboardingRequest) -> list[Difference]:
    """Each field of an update beside the live registry's current value."""
    r = onboarding_request
    if r.server is None:
        return []
    rows = {"institution": r.server.institution, "server": r.server}
    return [
        Difference(
            OnboardingRequest.label_of(mine),
            getattr(rows[row], live),
            getattr(r, mine),
            row,
            live,
        )
        for mine, (row, live) in OnboardingRequest.LIVE_FIELDS.items()
    ]


@dataclass(frozen=True)
class EmailReview:
    to_add_new: list[str]
    to_add_existing: list[str]
    to_remove_present: list[str]
    to_remove_absent: list[str]


def email_review(onboarding_request: OnboardingRequest) -> EmailReview:
    """Which requested emails would actually change something on the server."""
    r = onboarding_request
    approved: set[str] = set()
    if r.server_id and r.kind == OnboardingRequest.Kind.UPDATE:
        keys = [email_key(e) for e in [*r.emails_to_add, *r.emails_to_remove]]
        for batch in registry.chunks(keys):
            approved.update(
                ApprovedUser.objects.filter(
                    server_id=r.server_id, email_key__in=batch
                ).values_list("email_key", flat=True)
            )
    return EmailReview(
        to_add_new=[e for e in r.emails_to_add if email_key(e) not in approved],
        to_add_existing=[e for e in r.emails_to_add if email_key(e) in approved],
        to_remove_present=[e for e in r.emails_to_remove if email_key(e) in approved],
        to_remove_absent=[
            e for e in r.emails_to_remove if email_key(e) not in approved
        ],
    )


@dataclass(frozen=True)
class ChangeSummary:
    """What a change does, as its confirmation page and email show it."""

    changed: list[Difference]
    emails: EmailReview

    @property
    def labels(self) -> list[str]:
        return [d.label for d in self.changed]

    def in_words(self, names_new_contact: bool) -> str:
        """For the email to the address on record: the labels of the fields
        and how many emails, never the values (anyone holding the status link
        can have this mail sent; the values are on the page behind its link)."""
        parts = []
        if self.labels:
            parts.append("changes " + ", ".join(self.labels))
        if self.emails.to_add_new:
            parts.append(f"approves {len(self.emails.to_add_new)} new email(s)")
        if self.emails.to_remove_present:
            parts.append(
                f"removes {len(self.emails.to_remove_present)} approved email(s)"
            )
        text = f"What it does: it {'; '.join(parts) or 'changes nothing live'}."
        if names_new_contact:
            text += (
                " It names a new contact address, which gets a confirmation "
                "link of its own once you confirm, and becomes the contact on "
                "record only after it confirms too and staff approve."
            )
        return text


def change_summary(onboarding_request: OnboardingRequest) -> ChangeSummary:
    """The fields a change alters (live value → requested) and the emails it
    would really add or remove."""
    return ChangeSummary(
        changed=[d for d in differences(onboarding_request) if d.changed],
        emails=email_review(onboarding_request),
    )


def what_it_does(onboarding_request: OnboardingRequest) -> str:
    """A change's summary for its confirmation email ('' for a new request)."""
    r = onboarding_request
    if r.kind != OnboardingRequest.Kind.UPDATE:
        return ""
    return change_summary(r).in_words(bool(r.new_contact_address))


def purge_expired_requests(*, dry_run: bool = False) -> list[str]:
    """Delete the requests whose contact never confirmed in time, and return
    their references. They never reached anyone and hold what a stranger
    typed; a browser check they made of a live server stays in its history."""
    with transaction.atomic():
        expired = OnboardingRequest.objects.confirmation_expired().select_for_update()
        references = list(
            expired.order_by("created_at").values_list("reference", flat=True)
        )
        if not dry_run and references:
            ConnectivityCheck.objects.filter(
                onboarding_request__in=expired, server__isnull=False
            ).update(onboarding_request=None)
            OnboardingRequest.objects.filter(reference__in=references).delete()
    return references
