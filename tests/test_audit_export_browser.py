"""The admin's Audit export page in Chromium: the filters work by clicks and
the page, long URLs and notes in the preview included, fits 1280 pixels."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth import get_user_model

from integrations import audit
from tests.factories import make_institution, make_server
from tests.test_onboarding_browser import (  # noqa: F401 (fixture)
    PASSWORD,
    browser_page,
    chromium,
    staff_login,
)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.mark.usefixtures("chromium")
def test_the_page_filters_and_fits_1280_pixels(live_server: Any) -> None:
    get_user_model().objects.create_superuser("reviewer", "r@x.org", PASSWORD)
    long_path = "/dicomweb/" + "a-very-long-segment/" * 12
    with audit.acting_as(label="seed"):
        server = make_server(
            make_institution("A Hospital With A Rather Long Name Indeed"),
            "Main PACS",
            qido_url="https://pacs.example.edu" + long_path.rstrip("/"),
            emails=["jane.doe@university.edu"],
            notes="x" * 600,
        )
        make_server(make_institution("Other Clinic"), "Other PACS")
    base = live_server.url
    with browser_page() as page:
        staff_login(page, base, "/admin/")
        page.click("#audit-export a")  # type: ignore[attr-defined]
        page.fill("#id_audit_server", str(server.pk))  # type: ignore[attr-defined]
        page.click("#audit-filters input[type=submit]")  # type: ignore[attr-defined]
        page.wait_for_selector("#audit-preview")  # type: ignore[attr-defined]
        text = page.inner_text("#audit-preview")  # type: ignore[attr-defined]
        page.set_viewport_size({"width": 1280, "height": 900})  # type: ignore[attr-defined]
        width = page.evaluate("document.documentElement.scrollWidth")  # type: ignore[attr-defined]
        csv_link = page.get_attribute("#audit-download-csv", "href")  # type: ignore[attr-defined]
        problems = list(page.problems)  # type: ignore[attr-defined]
    assert "jane.doe@university.edu" in text
    assert "Other PACS" not in text
    assert width <= 1280, width
    assert csv_link == f"/api/v1/audit/?server={server.pk}&format=csv"
    assert problems == []
