"""Emails about onboarding requests: staff hear of each submission, the
contact of each decision. Sent after the transaction commits; a mail server
that is down is logged, never turned into an error page for the submitter."""

from __future__ import annotations

import logging

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.mail import send_mail
from django.urls import reverse

from integrations.models import OnboardingRequest
from integrations.onboarding.links import status_link

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


def _send(subject: str, body: str, recipients: list[str]) -> None:
    if not recipients:
        return
    try:
        send_mail(subject, body, None, recipients)
    except Exception:
        logger.exception("Could not send %r to %s", subject, recipients)


def submission_received(onboarding_request: OnboardingRequest, site_url: str) -> None:
    review = reverse(
        "admin:integrations_onboardingrequest_change", args=[onboarding_request.pk]
    )
    r = onboarding_request
    body = (
        f"{r.get_kind_display()} submitted for review: {r.reference}\n\n"
        f"Institution: {r.institution_name}\n"
        f"Server: {r.server_name}\n"
        f"Contact: {r.contact_name} <{r.contact_email}>\n"
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
        f"{r.institution_name}",
        body,
        recipients,
    )


def decision_made(onboarding_request: OnboardingRequest, site_url: str) -> None:
    r = onboarding_request
    if r.status == OnboardingRequest.Status.APPROVED:
        outcome = "has been approved"
        detail = (
            "Your approved users will see the server in Pacsbin's uploader once "
            "it is active. Your status page shows the current state."
        )
    else:
        outcome = "was not approved"
        detail = f"The reviewer's reason:\n\n{r.reason}\n"
    body = (
        f"Hello {r.contact_name},\n\n"
        f"Your request {r.reference} ({r.server_name}, {r.institution_name}) "
        f"{outcome}.\n\n{detail}\n\n"
        f"Your private status page (keep this link to yourself):\n"
        f"{status_url(r, site_url)}\n"
    )
    _send(f"Pacsbin integration {r.reference} {outcome}", body, [r.contact_email])
