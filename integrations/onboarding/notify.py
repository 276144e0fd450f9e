"""Emails about onboarding requests: the contact confirms their address,
then staff hear of the submission, then the contact hears the decision. Sent
after the transaction commits; a mail server that is down is logged, never
turned into an error page for the submitter.

Every value a submitter typed goes through ``one_line`` before it is written
into a subject or a body line: the forms already refuse line breaks in names,
and this holds even for a row written some other way."""

from __future__ import annotations

import logging

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.mail import send_mail
from django.urls import reverse

from integrations.models import DicomWebServer, OnboardingRequest
from integrations.onboarding.links import (
    confirmation_link,
    mailed_status_link,
    new_contact_link,
    status_link,
)
from integrations.validators import one_line

logger = logging.getLogger(__name__)


def staff_recipients() -> list[str]:
    if settings.ONBOARDING_NOTIFY_EMAILS:
        return list(settings.ONBOARDING_NOTIFY_EMAILS)
    emails = (
        get_user_model()
        .objects.filter(is_staff=True, is_active=True)
        .exclude(email="")
        .order_by("email")
        .values_list("email", flat=True)
    )
    return list(dict.fromkeys(emails))


def status_url(onboarding_request: OnboardingRequest, site_url: str) -> str:
    path = reverse(
        "integrations:onboarding_status",
        kwargs={"link": status_link(onboarding_request)},
    )
    return f"{site_url.rstrip('/')}{path}"


def confirmation_url(onboarding_request: OnboardingRequest, site_url: str) -> str:
    path = reverse(
        "integrations:onboarding_confirm",
        kwargs={"link": confirmation_link(onboarding_request)},
    )
    return f"{site_url.rstrip('/')}{path}"


def mailed_status_url(onboarding_request: OnboardingRequest, site_url: str) -> str:
    """The status page link of a mail to an address not yet confirmed: it
    opens the status page only once that address confirmed (links.py)."""
    path = reverse(
        "integrations:onboarding_mailed_status",
        kwargs={"link": mailed_status_link(onboarding_request)},
    )
    return f"{site_url.rstrip('/')}{path}"


def _send(subject: str, body: str, recipients: list[str]) -> None:
    recipients = [one_line(address) for address in recipients if one_line(address)]
    if not recipients:
        return
    try:
        send_mail(one_line(subject), body, None, recipients)
    except Exception:
        logger.exception("Could not send %r to %s", subject, recipients)


def new_contact_url(onboarding_request: OnboardingRequest, site_url: str) -> str:
    path = reverse(
        "integrations:onboarding_confirm_contact",
        kwargs={"link": new_contact_link(onboarding_request)},
    )
    return f"{site_url.rstrip('/')}{path}"


def confirmation_requested(
    onboarding_request: OnboardingRequest, site_url: str, what_it_does: str = ""
) -> None:
    """The link that proves the contact reads this mailbox. Nothing the
    submitter typed is in it, not even a name: it may reach a stranger whose
    address was typed by someone else. A change says ``what_it_does`` in our
    own words (``lifecycle.ChangeSummary.in_words``)."""
    r = onboarding_request
    if r.kind == OnboardingRequest.Kind.UPDATE:
        what = (
            "Someone sent a change to your archive's Pacsbin integration from "
            f"its status page, and this is the contact address on record for it. "
            f"Reference: {r.reference}.\n\n{what_it_does} The page behind "
            "the link shows each value, as it is and as it would be, before you "
            "confirm."
        )
    else:
        what = (
            "Someone, hopefully you, asked to connect an image archive to "
            "Pacsbin's uploader and gave this address as the contact. "
            f"Reference: {r.reference}."
        )
    hours = settings.ONBOARDING_CONFIRM_HOURS
    body = (
        "Hello,\n\n"
        f"{what}\n\n"
        f"Nobody at Pacsbin looks at it until you confirm. Open this link "
        f"within {hours} hours and press the button on the page:\n"
        f"{confirmation_url(r, site_url)}\n\n"
        "Once you have confirmed, this link opens the request's private "
        "status page (the review status, how to set up CORS for your archive, "
        "and where to give your proxy's URLs); keep it to yourself:\n"
        f"{mailed_status_url(r, site_url)}\n\n"
        "If this was not you, ignore this email: an unconfirmed request "
        "expires and is deleted.\n"
    )
    _send(
        f"Confirm your Pacsbin integration request {r.reference}",
        body,
        [r.confirmation_address],
    )


def new_contact_requested(onboarding_request: OnboardingRequest, site_url: str) -> None:
    """The new contact address of a confirmed change proves it reads this
    mailbox. Like every mail to an address not yet confirmed, it carries
    nothing anyone typed."""
    r = onboarding_request
    hours = settings.ONBOARDING_CONFIRM_HOURS
    body = (
        "Hello,\n\n"
        "A change to an archive's Pacsbin integration names this address as "
        "its new contact, and the contact on record confirmed the change. "
        f"Reference: {r.reference}.\n\n"
        "The contact hears from Pacsbin about the integration (review "
        "decisions, monitoring alerts) and confirms its later changes. This "
        "address becomes the contact only if you confirm: open this link within "
        f"{hours} hours and press the button on the page:\n"
        f"{new_contact_url(r, site_url)}\n\n"
        "If you did not expect this, ignore this email: nothing changes.\n"
    )
    _send(
        f"Confirm your address for Pacsbin integration request {r.reference}",
        body,
        [r.new_contact_address],
    )


def contact_replaced(
    onboarding_request: OnboardingRequest, old_contact: str, site_url: str
) -> None:
    """Tell the contact on record, once a change is approved, that the
    registry now writes to another address (which confirmed a link of its
    own)."""
    r = onboarding_request
    institution = r.server.institution.name if r.server else r.institution_name
    body = (
        "Hello,\n\n"
        f"With request {r.reference}, approved by Pacsbin staff, the contact "
        f"address of the Pacsbin integration of {one_line(institution)} is now "
        f"{one_line(r.contact_email)}. Decisions, monitoring alerts and the "
        "confirmation of later changes go there from now on, no longer to "
        "this address.\n\n"
        "If your team did not want this, write to us quoting "
        f"{r.reference}.\n"
    )
    _send(
        f"Pacsbin integration {r.reference}: the contact address changed",
        body,
        [old_contact],
    )


def submission_received(onboarding_request: OnboardingRequest, site_url: str) -> None:
    review = reverse(
        "admin:integrations_onboardingrequest_change", args=[onboarding_request.pk]
    )
    r = onboarding_request
    body = (
        f"{r.get_kind_display()} submitted for review: {r.reference}\n\n"
        f"Institution: {one_line(r.institution_name)}\n"
        f"Server: {one_line(r.server_name)}\n"
        f"Contact: {one_line(r.contact_name)} <{one_line(r.contact_email)}>\n"
        f"Confirmed by: {one_line(r.confirmation_address)}\n"
        f"Emails to approve: {len(r.emails_to_add)}"
        f", to remove: {len(r.emails_to_remove)}\n\n"
        f"Review it: {site_url.rstrip('/')}{review}\n"
    )
    recipients = staff_recipients()
    if not recipients:
        logger.warning(
            "Nobody to tell of %s: set ONBOARDING_NOTIFY_EMAILS or give a staff "
            "user an email address.",
            r.reference,
        )
    _send(
        f"[Pacsbin integrations] {r.reference} waiting for review: "
        f"{one_line(r.institution_name)}",
        body,
        recipients,
    )


def approved_detail(onboarding_request: OnboardingRequest) -> str:
    """What an approval means for the uploader, by the server's status now
    (a change to an active server is live at once; a new server may be kept
    pending until its connection works)."""
    server = onboarding_request.server
    if server is None:
        return "Your status page shows the current state."
    name = one_line(server.name)
    if server.status == DicomWebServer.Status.ACTIVE:
        if onboarding_request.kind == OnboardingRequest.Kind.UPDATE:
            return (
                f"{name} is active, and the change applies now: Pacsbin's "
                "uploader uses it from your approved users' next search."
            )
        return (
            f"{name} is active: your approved users see it in Pacsbin's uploader now."
        )
    if server.status == DicomWebServer.Status.PENDING:
        return (
            f"{name} is not switched on yet (pending): Pacsbin staff switch it "
            "on once the connection works, usually after a passing check from "
            "your status page. Your approved users see it in Pacsbin's uploader "
            "from then on."
        )
    return (
        f"{name} is suspended: Pacsbin's uploader does not offer it until "
        "Pacsbin staff switch it on again. Write to us if that is unexpected."
    )


def decision_made(onboarding_request: OnboardingRequest, site_url: str) -> None:
    """Tell the contact, at the address they confirmed and nowhere else."""
    r = onboarding_request
    if not r.is_confirmed or not r.confirmation_address:
        logger.warning("Not telling %s's contact: never confirmed.", r.reference)
        return
    if r.status == OnboardingRequest.Status.APPROVED:
        outcome = "has been approved"
        detail = approved_detail(r)
    else:
        outcome = "was not approved"
        reason = "\n".join(f"  {one_line(line)}" for line in r.reason.splitlines())
        detail = f"The reviewer's reason:\n\n{reason}\n"
    body = (
        f"Hello {one_line(r.contact_name)},\n\n"
        f"Your request {r.reference} ({one_line(r.server_name)}, "
        f"{one_line(r.institution_name)}) {outcome}.\n\n{detail}\n\n"
        f"Your private status page (keep this link to yourself):\n"
        f"{status_url(r, site_url)}\n"
    )
    _send(
        f"Pacsbin integration {r.reference} {outcome}",
        body,
        [r.confirmation_address],
    )
