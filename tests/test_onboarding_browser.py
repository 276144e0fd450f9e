"""The onboarding pages in a real browser (Debian's Chromium via Playwright):
a contact fills in the form, confirms with the link from their email, a
staffer approves with real clicks, and the approved emails are then answered
by the access question.

The live server runs in this process, so the emails it sends land in Django's
test outbox (``django.core.mail.outbox``), where the tests read the link.

Playwright's sync API runs an event loop in this thread while a browser is
open, and Django refuses ORM calls inside one; so each test does its database
work before opening the browser and after closing it, never in between.
"""

from __future__ import annotations

import io
import json
import os
import re
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command

from integrations.models import DicomWebServer, OnboardingRequest
from integrations.onboarding import approve_request
from integrations.onboarding.links import status_link
from tests import peers
from tests.factories import (
    submitted_request,
)
from tests.onboarding_helpers import (
    confirmation_mails,
    confirmation_path,
    fresh_cache,
)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PASSWORD = "correct horse battery staple 42"
# Screenshots go to a git-ignored folder unless asked for elsewhere; the README
# ones are refreshed with ONBOARDING_SCREENSHOTS_DIR=docs/screenshots.
SCREENSHOTS = Path(
    os.environ.get("ONBOARDING_SCREENSHOTS_DIR")
    or Path(settings.BASE_DIR) / "test-artifacts" / "screenshots"
)


@pytest.fixture
def chromium() -> str:
    """Debian's Chromium; its absence skips only outside CI."""
    peers.require(peers.CHROMIUM)
    return peers.CHROMIUM


@contextmanager
def browser_page() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = peers.launch_chromium(playwright)
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 900})
            page.set_default_timeout(15_000)
            problems: list[str] = []
            # CSP violations are console errors; a missing static file is a
            # failed sub-resource (pages answering 400 on bad input are fine).
            page.on(
                "console",
                lambda m: (
                    problems.append(m.text)
                    if m.type == "error" and not m.text.startswith("Failed to load")
                    else None
                ),
            )
            page.on(
                "response",
                lambda r: (
                    problems.append(f"{r.status} {r.url}")
                    if r.status >= 400
                    and r.request.resource_type
                    in ("stylesheet", "script", "image", "font")
                    else None
                ),
            )
            page.problems = problems  # type: ignore[attr-defined]
            yield page
        finally:
            browser.close()


def screenshot(page: object, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / name), full_page=True)  # type: ignore[attr-defined]


def fits_a_phone(page: object) -> bool:
    """The page needs no sideways scrolling 375 pixels wide."""
    page.set_viewport_size({"width": 375, "height": 800})  # type: ignore[attr-defined]
    width = page.evaluate("document.documentElement.scrollWidth")  # type: ignore[attr-defined]
    page.set_viewport_size({"width": 1100, "height": 900})  # type: ignore[attr-defined]
    return width <= 375


def staff_login(page: object, base: str, next_path: str) -> None:
    page.goto(f"{base}/admin/login/?next={next_path}")  # type: ignore[attr-defined]
    page.fill("#id_username", "reviewer")  # type: ignore[attr-defined]
    page.fill("#id_password", PASSWORD)  # type: ignore[attr-defined]
    page.click("input[type=submit]")  # type: ignore[attr-defined]


def access_key() -> str:
    """A key for the access API, made the way operators make one."""
    out = io.StringIO()
    call_command(
        "create_api_key", "onboarding-browser", "--scope", "access", stdout=out
    )
    return out.getvalue().strip().splitlines()[-1]


def access_api_servers(base: str, key: str, email: str) -> list[str]:
    """The server names the access API gives an email, asked over HTTP the way
    the uploader asks."""
    query = urllib.parse.urlencode({"email": email})
    request = urllib.request.Request(
        f"{base}/api/v1/access?{query}", headers={"Authorization": f"Api-Key {key}"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        answer = json.load(response)
    return [server["name"] for server in answer["servers"]]


@pytest.fixture(autouse=True)
def _fresh_cache(settings: object) -> None:
    """No rate-limit counts left from other tests (the live server runs in
    this process, so it sees the same settings)."""
    settings.CACHES = fresh_cache()  # type: ignore[attr-defined]


def make_reviewer() -> None:
    get_user_model().objects.create_superuser(
        "reviewer", "reviewer@pacsbin.example", PASSWORD
    )


def test_a_contact_submits_and_a_staffer_approves_in_the_browser(
    live_server, chromium: str
) -> None:
    make_reviewer()
    base = live_server.url
    typed_emails = "ann@st-example.org\nnot-an-email\nbob@st-example.org, carol@"

    with browser_page() as page:
        page.goto(f"{base}/onboarding/")
        assert page.is_hidden("#id_wado_url"), "WADO is 'same as QIDO' by default"
        assert fits_a_phone(page)
        # Keyboard: the skip link comes first; the honeypot is never tabbed to.
        page.keyboard.press("Tab")
        assert page.evaluate("document.activeElement.className") == "skip-link"
        page.focus("#id_notes")
        page.keyboard.press("Tab")
        assert page.evaluate("document.activeElement.type") == "submit"
        page.fill("#id_institution_name", "St. Example Hospital")
        page.fill("#id_contact_name", "Pat Admin")
        page.fill("#id_contact_email", "pat.admin@st-example.org")
        page.fill("#id_server_name", "Main PACS")
        page.fill("#id_qido_url", "https://pacs.st-example.org/dicomweb/")
        page.check("input[name=cors_mode][value=reverse_proxy]")
        page.fill("#id_emails", typed_emails)
        page.click("button[type=submit]")

        # Errors: per line, with the value, summarised at the top, text kept.
        summary = page.locator("#error-summary")
        summary.wait_for()
        assert page.evaluate("document.activeElement.id") == "error-summary"
        assert "Line 2: “not-an-email”" in summary.inner_text()
        assert "Line 3: “carol@”" in page.inner_text("#id_emails_error")
        assert page.input_value("#id_emails") == typed_emails
        assert page.input_value("#id_institution_name") == "St. Example Hospital"
        assert page.is_checked("input[name=cors_mode][value=reverse_proxy]")
        screenshot(page, "onboarding-form.png")
        page.click("#error-summary a[href='#id_emails']")
        assert page.evaluate("location.hash") == "#id_emails"

        page.fill(
            "#id_emails", "ann@st-example.org\nbob@st-example.org; ANN@st-example.org"
        )
        page.click("button[type=submit]")
        page.locator("#reference").wait_for()
        reference = page.inner_text("#reference")
        status_url = page.get_attribute("#status-link", "href")
        assert re.fullmatch(r"OB-[A-Z0-9]{7}", reference)

        assert "Check your mailbox" in page.inner_text("h1")
        assert page.inner_text("#confirmation-address") == "pat.admin@st-example.org"

        page.goto(status_url)
        assert page.inner_text("#review-status") == "Waiting for email confirmation"
        staff_login(page, base, "/admin/integrations/onboardingrequest/")
        assert reference not in page.inner_text("#changelist")

        (message,) = confirmation_mails("pat.admin@st-example.org")
        assert reference in message.subject
        page.goto(base + confirmation_path(message))
        screenshot(page, "onboarding-confirm.png")
        page.goto(status_url)  # the link opened once (a mail scanner) changes nothing
        assert page.inner_text("#review-status") == "Waiting for email confirmation"
        page.goto(base + confirmation_path(message))
        page.click("#confirm-button")
        page.locator("#confirmed").wait_for()
        assert fits_a_phone(page)

        page.goto(status_url)
        assert page.inner_text("#review-status") == "Waiting for review"
        assert "Access-Control-Allow-Origin: *" in page.inner_text("#cors-headers")
        screenshot(page, "onboarding-status.png")

        assert fits_a_phone(page)

        page.goto(f"{base}/admin/integrations/onboardingrequest/")
        page.click(f"text={reference}")
        page.locator("#approve-button").wait_for()
        screenshot(page, "onboarding-review.png")
        page.click("#approve-button")
        assert f"{reference} approved" in page.inner_text(".messagelist")

        page.goto(status_url)
        assert page.inner_text("#review-status") == "Approved"
        assert page.problems == []  # type: ignore[attr-defined]

    r = OnboardingRequest.objects.get(reference=reference)
    assert (r.status, r.reviewer.username) == ("approved", "reviewer")
    server = DicomWebServer.objects.get()
    assert server.status == "active"
    assert DicomWebServer.history.get().history_actor == "reviewer"
    # The access question, over the API and through the one registry function.
    key = access_key()
    for email in ("ann@st-example.org", "BOB@st-example.org"):
        assert [s.name for s in DicomWebServer.objects.approved_for(email)] == [
            "Main PACS"
        ]
        assert access_api_servers(base, key, email) == ["Main PACS"]
    assert list(DicomWebServer.objects.approved_for("carol@st-example.org")) == []
    assert access_api_servers(base, key, "carol@st-example.org") == []


def test_an_update_sent_from_the_status_page_changes_the_live_data_once_approved(
    live_server, chromium: str
) -> None:
    make_reviewer()
    reviewer = get_user_model().objects.get(username="reviewer")
    origin = submitted_request()
    server = approve_request(origin, reviewer).server
    base = live_server.url

    with browser_page() as page:
        page.goto(f"{base}/onboarding/status/{status_link(origin)}/")
        page.click("#send-change")
        assert (
            page.input_value("#id_qido_url") == "https://pacs.st-example.org/dicomweb"
        )
        page.fill("#id_qido_url", "https://dicomweb.st-example.org/rs")
        page.uncheck("#id_wado_same")
        page.fill("#id_wado_url", "https://dicomweb.st-example.org/wado-rs")
        page.fill("#id_emails_to_add", "carol@st-example.org")
        page.fill("#id_emails_to_remove", "bob@st-example.org")
        page.click("button[type=submit]")
        page.locator("#reference").wait_for()
        reference = page.inner_text("#reference")

        # The change is confirmed from the contact address on record.
        (message,) = [
            m
            for m in confirmation_mails("pat.admin@st-example.org")
            if reference in m.subject
        ]
        page.goto(base + confirmation_path(message))
        page.click("#confirm-button")
        page.locator("#confirmed").wait_for()

        staff_login(page, base, "/admin/integrations/onboardingrequest/")
        page.click(f"text={reference}")
        differences = page.inner_text("#differences")
        assert "https://dicomweb.st-example.org/rs" in differences
        assert "changed" in differences
        assert page.inner_text("#emails-to-remove").strip() == "bob@st-example.org"
        page.click("#approve-button")
        assert f"{reference} approved" in page.inner_text(".messagelist")
        assert page.problems == []  # type: ignore[attr-defined]

    server.refresh_from_db()
    assert server.qido_url == "https://dicomweb.st-example.org/rs"
    assert server.wado_url == "https://dicomweb.st-example.org/wado-rs"
    assert [
        s.pk for s in DicomWebServer.objects.approved_for("carol@st-example.org")
    ] == [server.pk]
    assert list(DicomWebServer.objects.approved_for("bob@st-example.org")) == []
    key = access_key()
    assert access_api_servers(base, key, "carol@st-example.org") == ["Main PACS"]
    assert access_api_servers(base, key, "bob@st-example.org") == []
    assert OnboardingRequest.objects.get(reference=reference).status == "approved"
