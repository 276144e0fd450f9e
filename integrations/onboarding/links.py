"""References and private status links of onboarding requests.

The link carries the request's random token signed with the deployment's
secret key: guessing needs the token (192 random bits) and forging needs the
key, so a leaked database alone does not open anyone's status page.
"""

from __future__ import annotations

import secrets
from datetime import timedelta

from django.conf import settings
from django.core import signing
from django.http import Http404

from integrations.models import OnboardingRequest

_SALT = "integrations.onboarding.status-link"
# No 0/O, 1/I/L: references are read out over the phone.
_REFERENCE_ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"


def new_reference() -> str:
    while True:
        reference = "OB-" + "".join(
            secrets.choice(_REFERENCE_ALPHABET) for _ in range(7)
        )
        if not OnboardingRequest.objects.filter(reference=reference).exists():
            return reference


def new_token() -> str:
    return secrets.token_urlsafe(24)


def status_link(onboarding_request: OnboardingRequest) -> str:
    """The signed value that goes in the status page's URL."""
    return signing.Signer(salt=_SALT).sign(onboarding_request.token)


def request_for_link(link: str) -> OnboardingRequest:
    """The request a status link opens; a plain 404 for anything else, so a
    tampered link and an unknown one look the same."""
    return _request_for_signed(link, _SALT)


def _request_for_signed(link: str, salt: str) -> OnboardingRequest:
    try:
        token = signing.Signer(salt=salt).unsign(link)
    except signing.BadSignature:
        raise Http404 from None
    try:
        return OnboardingRequest.objects.select_related(
            "institution", "server__institution", "reviewer"
        ).get(token=token)
    except OnboardingRequest.DoesNotExist:
        raise Http404 from None


# The status link a confirmation email carries: that mail goes to an address
# nobody has confirmed yet (anyone may type a stranger's), so its link opens
# the status page, which shows what the submitter typed, only once that
# address confirmed; before, a page with nothing typed on it.
_MAILED_STATUS_SALT = "integrations.onboarding.mailed-status-link"


def mailed_status_link(onboarding_request: OnboardingRequest) -> str:
    return signing.Signer(salt=_MAILED_STATUS_SALT).sign(onboarding_request.token)


def request_for_mailed_link(link: str) -> OnboardingRequest:
    """The request a mailed status link is for; a plain 404 otherwise."""
    return _request_for_signed(link, _MAILED_STATUS_SALT)


_CONFIRM_SALT = "integrations.onboarding.confirm-link"


class LinkExpired(Exception):
    """A genuine confirmation link, opened too late."""


def confirmation_link(onboarding_request: OnboardingRequest) -> str:
    """The signed, timestamped value of the emailed confirmation link. Its own
    salt: a status link (shown to whoever submits) never confirms anything."""
    return signing.TimestampSigner(salt=_CONFIRM_SALT).sign(onboarding_request.token)


def request_for_confirmation_link(link: str) -> OnboardingRequest:
    """The request a confirmation link confirms: 404 for a tampered or unknown
    link, ``LinkExpired`` for a real one older than ONBOARDING_CONFIRM_HOURS."""
    return _request_for_timestamped(link, _CONFIRM_SALT)


# The new contact address of a change gets a link of its own: pressing the
# button there proves that address, never the change's confirmation address.
_NEW_CONTACT_SALT = "integrations.onboarding.new-contact-link"


def new_contact_link(onboarding_request: OnboardingRequest) -> str:
    return signing.TimestampSigner(salt=_NEW_CONTACT_SALT).sign(
        onboarding_request.token
    )


def request_for_new_contact_link(link: str) -> OnboardingRequest:
    """Like ``request_for_confirmation_link``, for the new contact's link."""
    r = _request_for_timestamped(link, _NEW_CONTACT_SALT)
    if not r.new_contact_address:
        raise Http404
    return r


def _request_for_timestamped(link: str, salt: str) -> OnboardingRequest:
    try:
        token = signing.TimestampSigner(salt=salt).unsign(
            link, max_age=timedelta(hours=settings.ONBOARDING_CONFIRM_HOURS)
        )
    except signing.SignatureExpired:
        raise LinkExpired from None
    except signing.BadSignature:
        raise Http404 from None
    try:
        return OnboardingRequest.objects.select_related("server__institution").get(
            token=token
        )
    except OnboardingRequest.DoesNotExist:
        raise Http404 from None
