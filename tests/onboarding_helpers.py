"""Shared pieces of the onboarding tests."""

from __future__ import annotations

import re
import uuid
from typing import Any
from urllib.parse import urlsplit

from django.core import mail
from django.test import override_settings

FORM_URL = "/onboarding/"
_CONFIRM_URL = re.compile(r"https?://\S+/onboarding/confirm/\S+/")


def confirmation_mails(to: str | None = None) -> list[mail.EmailMessage]:
    """The confirmation emails in the test outbox (to one address if given)."""
    return [
        message
        for message in mail.outbox
        if message.subject.startswith("Confirm your Pacsbin integration request")
        and (to is None or message.to == [to])
    ]


def confirmation_url_in(message: mail.EmailMessage) -> str:
    """The confirmation link a confirmation email carries (its full URL)."""
    found = _CONFIRM_URL.findall(message.body)
    assert len(found) == 1, message.body
    return found[0]


def confirmation_path(message: mail.EmailMessage | None = None) -> str:
    """The path of the link in ``message`` (default: the latest confirmation
    email), for the test client."""
    message = message or confirmation_mails()[-1]
    return urlsplit(confirmation_url_in(message)).path


def form_data(**overrides: Any) -> dict[str, Any]:
    """A valid new-server submission as the browser posts it."""
    data = {
        "institution_name": "St. Example Hospital",
        "contact_name": "Pat Admin",
        "contact_email": "Pat.Admin@St-Example.org",
        "server_name": "Main PACS",
        "qido_url": "https://PACS.st-example.org/dicomweb/",
        "wado_same": "on",
        "wado_url": "",
        "cors_mode": "reverse_proxy",
        "emails": "Ann@st-example.org\nbob@st-example.org; ann@ST-EXAMPLE.org",
        "notes": "",
        "leave_blank": "",
    }
    data.update(overrides)
    return {key: value for key, value in data.items() if value is not None}


def fresh_cache() -> dict[str, Any]:
    """A private in-memory cache: no submissions counted yet, and nothing to
    clear in a shared one (clearing a Redis cache flushes its whole database)."""
    return {
        "default": {
            "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
            "LOCATION": f"onboarding-test-{uuid.uuid4().hex}",
        }
    }


class FreshRateLimit:
    """Every test starts with no submissions counted (a cache outlives tests)."""

    def setUp(self) -> None:
        super().setUp()  # type: ignore[misc]
        override = override_settings(CACHES=fresh_cache())
        override.enable()
        self.addCleanup(override.disable)  # type: ignore[attr-defined]
