"""An access review in a real browser (Debian's Chromium via Playwright):
the schedule mails the contact, who opens the link from the email, marks
one email for removal, adds a note and submits; the link then says the
review is already answered.

The live server runs in this process, so mail lands in Django's test
outbox. Playwright's sync API runs an event loop in this thread, where
Django refuses ORM calls: the database work is done before the browser
opens and after it closes."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.core import mail
from django.utils import timezone

from integrations.accessreviews import flows
from integrations.models import AccessReview, ApprovedUser, DicomWebServer
from tests import peers
from tests.factories import make_institution, make_server
from tests.onboarding_helpers import fresh_cache
from tests.test_access_reviews import CONTACT, confirm_contact

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

# A git-ignored folder, as the onboarding browser tests use.
SCREENSHOTS = Path(settings.BASE_DIR) / "test-artifacts" / "screenshots"
EMAILS = ["ann@hospital.example", "bob@hospital.example", "cat@hospital.example"]


@pytest.fixture(autouse=True)
def _review_settings(settings, live_server) -> None:  # type: ignore[no-untyped-def]
    settings.CACHES = fresh_cache()
    settings.ACCESS_REVIEW_DAYS = 180
    settings.ACCESS_REVIEW_GRACE_DAYS = 30
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    settings.REGISTRY_PUBLIC_ORIGIN = live_server.url


def test_the_contact_reviews_through_the_emailed_link(live_server) -> None:  # type: ignore[no-untyped-def]
    peers.require(peers.CHROMIUM)
    institution = make_institution("St. Example Hospital")
    confirm_contact(institution)
    server = make_server(institution, emails=EMAILS)
    DicomWebServer.objects.filter(pk=server.pk).update(
        created_at=timezone.now() - timedelta(days=200)
    )
    (review,) = flows.run()[0]
    (message,) = [m for m in mail.outbox if m.to == [CONTACT]]
    link = re.search(
        r"^(http://\S+/onboarding/access-review/\S+/)$", message.body, re.M
    )
    assert link, message.body
    url = link.group(1)
    assert url.startswith(live_server.url)

    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = peers.launch_chromium(playwright)
        try:
            page = browser.new_page(viewport={"width": 390, "height": 844})
            page.set_default_timeout(15_000)
            failed: list[str] = []
            page.on(
                "response",
                lambda r: (
                    failed.append(f"{r.status} {r.url}")
                    if r.status >= 400 and r.request.resource_type == "stylesheet"
                    else None
                ),
            )
            page.goto(url)
            assert "Who can reach Main PACS?" in page.inner_text("h1")
            assert page.locator(".review-user").count() == 3
            width = page.evaluate("document.documentElement.scrollWidth")
            assert width <= 390, f"sideways scroll at 390 px: {width}"
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(SCREENSHOTS / "access-review.png"), full_page=True)
            row = page.locator(".review-user", has_text="bob@hospital.example")
            row.get_by_label("Remove").check()
            page.fill("#id_note", "Bob moved to another hospital.")
            page.click("#review-submit")
            page.locator("#review-answered").wait_for()
            assert "2 emails keep access" in page.inner_text("#review-answered")
            assert page.inner_text("#review-removed") == "bob@hospital.example"
            page.goto(url)
            assert "already answered" in page.inner_text("#review-refused")
            assert not failed, failed
        finally:
            browser.close()

    review.refresh_from_db()
    assert review.state == AccessReview.State.ANSWERED
    assert review.note == "Bob moved to another hospital."
    assert sorted(ApprovedUser.objects.values_list("email", flat=True)) == [
        "ann@hospital.example",
        "cat@hospital.example",
    ]
    removal = ApprovedUser.history.get(history_type="-")
    assert removal.history_actor == f"{CONTACT} (access review {review.pk})"
