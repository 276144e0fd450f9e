"""The monitoring list and the status page's "Your proxy's URLs" in Chromium:
the list fits 1280 px with no sideways scroll and no cell cutting its text;
the status page with the proxy form fits a 390 px phone."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from integrations.models import ServerHealth
from integrations.onboarding.links import status_link
from tests.factories import make_institution, make_server, submitted_request
from tests.test_monitoring_list import add_checks
from tests.test_onboarding_browser import (  # noqa: F401 -- fixtures
    PASSWORD,
    _fresh_cache,
    browser_page,
    chromium,
    make_reviewer,
    staff_login,
)

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("chromium"),
]

# Elements whose content is wider than their box (text cut off or spilling).
CLIPPED = """() => [...document.querySelectorAll(
    '#result_list td, #result_list th, .pi-totals a, .card, .field, label, p')]
  .filter(e => e.scrollWidth > e.clientWidth + 1)
  .map(e => e.className + ': ' + e.textContent.trim().slice(0, 60))"""


def fill_monitoring() -> None:
    now = timezone.now()
    institution = make_institution("Saint Example University Hospital of the North")
    for number, state in enumerate(["failing", "unknown", "ok", "unmonitored"] * 3):
        server = make_server(
            institution,
            f"Long archive name number {number} with a radiology department",
            qido_url=f"https://pacs-{number}.very-long-hospital-domain.example/dicomweb",
        )
        ServerHealth.objects.create(
            server=server,
            state=state,
            since=now - timedelta(hours=number),
            outcome="credentials_misconfigured" if state != "ok" else "ok",
            consecutive_failures=1 if state == "unknown" else 0,
            last_checked_at=now - timedelta(minutes=number),
            next_check_at=now + timedelta(minutes=3),
            tls_expires_at=now + timedelta(days=40),
        )
        add_checks(server, ["ok", "unreachable", "blocked"] * 7)


def test_the_monitoring_list_fits_1280_px(live_server) -> None:
    make_reviewer()
    fill_monitoring()
    assert PASSWORD
    with browser_page() as page:
        page.set_viewport_size({"width": 1280, "height": 800})  # type: ignore[attr-defined]
        staff_login(page, live_server.url, "/admin/integrations/serverhealth/")
        page.wait_for_selector("#result_list")  # type: ignore[attr-defined]
        width = page.evaluate("document.documentElement.scrollWidth")  # type: ignore[attr-defined]
        assert width <= 1280, width
        assert page.evaluate(CLIPPED) == []  # type: ignore[attr-defined]
        assert page.locator("svg.pi-spark").count() == 12  # type: ignore[attr-defined]
        page.click("#total-failing")  # type: ignore[attr-defined]
        page.wait_for_url("**shown=failing")  # type: ignore[attr-defined]
        assert page.locator("#result_list tbody tr").count() == 3  # type: ignore[attr-defined]
        assert page.problems == []  # type: ignore[attr-defined]


def test_the_status_page_with_the_proxy_form_fits_a_phone(live_server) -> None:
    r = submitted_request()
    path = f"/onboarding/status/{status_link(r)}/"
    with browser_page() as page:
        page.set_viewport_size({"width": 390, "height": 844})  # type: ignore[attr-defined]
        page.goto(live_server.url + path)  # type: ignore[attr-defined]
        page.fill("#id_proxy-qido_url", "https://proxy.example/dicom web")  # type: ignore[attr-defined]
        page.click("#save-proxy-urls")  # type: ignore[attr-defined]
        error = page.locator("#id_proxy-qido_url_error")  # type: ignore[attr-defined]
        assert "dicom web" in error.inner_text()
        width = page.evaluate("document.documentElement.scrollWidth")  # type: ignore[attr-defined]
        assert width <= 390, width
        assert page.problems == []  # type: ignore[attr-defined]
