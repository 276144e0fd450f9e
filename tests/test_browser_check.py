"""The browser-side check, in Debian's Chromium: from the admin server page,
against Orthanc behind the generated nginx configuration, recorded as a check."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth import get_user_model

from integrations.connectivity import proxyconfig
from integrations.models import ConnectivityCheck, DicomWebServer, Institution
from tests import peers

pytestmark = [pytest.mark.browser, pytest.mark.peers]
PASSWORD = "a-long-test-password-1"


@pytest.fixture
def open_page() -> Callable[[], AbstractContextManager[Any]]:
    """Opens Chromium only while the test drives it: the ORM is used before and
    after, never while Playwright's event loop runs (that would open a second,
    never-closed database connection)."""
    peers.require(peers.CHROMIUM)

    @contextmanager
    def opened() -> Iterator[Any]:
        from playwright.sync_api import sync_playwright

        with sync_playwright() as playwright:
            browser = peers.launch_chromium(playwright)
            try:
                yield browser.new_page()
            finally:
                browser.close()

    return opened


def make_staff() -> None:
    get_user_model().objects.create_superuser("staff", "staff@example.org", PASSWORD)


def log_in(page: Any, base: str) -> None:
    page.goto(f"{base}/admin/login/")
    page.fill("#id_username", "staff")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url(f"{base}/admin/")


def check_from_the_server_page(page: Any, base: str, server_pk: int) -> str:
    page.goto(f"{base}/admin/integrations/dicomwebserver/{server_pk}/change/")
    assert page.text_content("[data-browser-check-origin]") == base
    page.click("[data-browser-check-run]")
    output = page.wait_for_selector(
        "[data-browser-check-output][data-outcome]", timeout=30_000
    )
    return output.get_attribute("data-outcome")


@pytest.mark.django_db(transaction=True)
def test_the_browser_check_passes_through_the_generated_nginx_and_is_recorded(
    open_page: Any, live_server: Any, orthanc: peers.Orthanc, tmp_path: Path, settings
) -> None:
    base = live_server.url
    # The page runs on the registry's own origin: the configuration allows it
    # because REGISTRY_PUBLIC_ORIGIN names it, as DESIGN.md describes.
    settings.UPLOADER_ORIGINS = ["https://pacsbin.com"]
    settings.REGISTRY_PUBLIC_ORIGIN = base
    institution = Institution.objects.create(name="University Hospital")
    server = DicomWebServer.objects.create(
        institution=institution,
        name="University PACS",
        qido_url=orthanc.dicomweb,
        wado_url=orthanc.dicomweb,
    )
    make_staff()
    with peers.nginx(tmp_path, proxyconfig.render(server, "nginx")) as proxy:
        server.qido_url = server.wado_url = f"{proxy}/dicom-web"
        server.save()
        with open_page() as page:
            log_in(page, base)
            outcome = check_from_the_server_page(page, base, server.pk)
            text = page.text_content("[data-browser-check-output]")
            # For a person to look at (test-artifacts/ is git-ignored).
            artifacts = Path(__file__).resolve().parent.parent / "test-artifacts"
            artifacts.mkdir(exist_ok=True)
            page.locator("fieldset:has([data-browser-check])").screenshot(
                path=str(artifacts / "admin-connectivity.png")
            )

    assert outcome == "ok", text
    assert f"Origin tested: {base}." in text
    check = ConnectivityCheck.objects.get(server=server)
    assert f"Recorded as check #{check.pk}." in text
    assert (check.source, check.origin, check.outcome) == ("browser", base, "ok")
    assert check.created_by.username == "staff"
    assert check.findings[0]["code"] == "browser_ok"
    assert "1 study" in check.findings[0]["message"]


@pytest.mark.django_db(transaction=True)
def test_an_archive_without_cors_is_reported_as_blocked_by_cors(
    open_page: Any, live_server: Any, orthanc: peers.Orthanc
) -> None:
    base = live_server.url
    institution = Institution.objects.create(name="University Hospital")
    server = DicomWebServer.objects.create(
        institution=institution,
        name="Bare Orthanc",
        qido_url=orthanc.dicomweb,
        wado_url=orthanc.dicomweb,
    )
    make_staff()
    with open_page() as page:
        log_in(page, base)
        outcome = check_from_the_server_page(page, base, server.pk)

    assert outcome == "cors_missing"
    check = ConnectivityCheck.objects.get(server=server)
    assert (check.source, check.outcome) == ("browser", "cors_missing")
    assert check.findings[0]["code"] == "browser_cors_blocked"
    assert "reached the archive but was not allowed" in check.findings[0]["message"]
