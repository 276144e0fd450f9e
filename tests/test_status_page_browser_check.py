"""The status page's browser check in Debian's Chromium: a contact presses the
button, their browser fetch()es the archive (Orthanc, behind the generated
nginx configuration or bare), and the outcome is recorded for the request.

As in test_onboarding_browser, the database work happens before the browser
opens and after it closes; the live server does its own in its thread.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from integrations.connectivity import proxyconfig
from integrations.models import ConnectivityCheck, OnboardingRequest
from integrations.onboarding import status_checks
from integrations.onboarding.links import status_link
from tests import peers
from tests.factories import (
    submitted_request,
)
from tests.onboarding_helpers import (
    fresh_cache,
)
from tests.test_onboarding_browser import (  # noqa: F401 -- chromium is a fixture
    browser_page,
    chromium,
    screenshot,
)

pytestmark = [
    pytest.mark.browser,
    pytest.mark.peers,
    pytest.mark.django_db(transaction=True),
]


@pytest.fixture(autouse=True)
def _fresh_cache(settings: object) -> None:
    """No rate-limit counts left from other tests (the live server runs in
    this process, so it sees the same settings)."""
    settings.CACHES = fresh_cache()  # type: ignore[attr-defined]


def request_for(qido_url: str) -> OnboardingRequest:
    return submitted_request(qido_url=qido_url, wado_url=qido_url)


def run_the_check(base: str, r: OnboardingRequest, shot: str = "") -> dict[str, object]:
    """Open the status page, press the button, wait for the answer."""
    with browser_page() as page:
        page.goto(f"{base}/onboarding/status/{status_link(r)}/")  # type: ignore[attr-defined]
        tested = page.text_content("#tested-origin")  # type: ignore[attr-defined]
        page.click("#run-browser-check")  # type: ignore[attr-defined]
        output = page.wait_for_selector(  # type: ignore[attr-defined]
            "[data-browser-check-output][data-outcome]", timeout=30_000
        )
        if shot:
            screenshot(page, shot)
        return {
            "outcome": output.get_attribute("data-outcome"),
            "text": output.text_content(),
            "tested": tested,
            "problems": list(page.problems),  # type: ignore[attr-defined]
        }


def test_the_check_passes_through_the_generated_nginx_and_is_recorded(
    chromium: str,  # noqa: F811
    live_server: object,
    orthanc: peers.Orthanc,
    tmp_path: Path,
    settings: object,
) -> None:
    base = live_server.url  # type: ignore[attr-defined]
    # The page runs on the registry's own origin; the configuration allows it
    # because REGISTRY_PUBLIC_ORIGIN names it, as DESIGN.md describes.
    settings.UPLOADER_ORIGINS = ["https://pacsbin.com"]  # type: ignore[attr-defined]
    settings.REGISTRY_PUBLIC_ORIGIN = base  # type: ignore[attr-defined]
    r = request_for(orthanc.dicomweb)
    # The configuration the page itself offers for this request.
    config = proxyconfig.render(status_checks.server_for(r), "nginx")
    with peers.nginx(tmp_path, config) as proxy:
        OnboardingRequest.objects.filter(pk=r.pk).update(
            qido_url=f"{proxy}/dicom-web", wado_url=f"{proxy}/dicom-web"
        )
        seen = run_the_check(base, r, shot="status-browser-check.png")

    assert seen["outcome"] == "ok", seen["text"]
    assert seen["tested"] == base
    assert f"Origin tested: {base}." in str(seen["text"])
    # No CSP violation: the archive's origin is in the page's connect-src.
    assert seen["problems"] == []
    check = ConnectivityCheck.objects.get()
    assert f"Recorded as check #{check.pk}." in str(seen["text"])
    assert (check.source, check.origin, check.outcome) == ("browser", base, "ok")
    assert (check.onboarding_request_id, check.server_id) == (r.pk, None)
    assert check.findings[0]["code"] == "browser_ok"
    assert "1 study" in check.findings[0]["message"]


def test_a_bare_archive_is_recorded_as_blocked_by_cors(
    chromium: str,  # noqa: F811
    live_server: object,
    orthanc: peers.Orthanc,
) -> None:
    base = live_server.url  # type: ignore[attr-defined]
    r = request_for(orthanc.dicomweb)
    seen = run_the_check(base, r)

    assert seen["outcome"] == "cors_missing", seen["text"]
    # Blocked by the archive's missing headers, not by our own page's CSP
    # (which would make the archive look unreachable).
    assert not [p for p in seen["problems"] if "Content Security Policy" in str(p)]
    check = ConnectivityCheck.objects.get()
    assert (check.source, check.origin, check.outcome) == (
        "browser",
        base,
        "cors_missing",
    )
    assert check.onboarding_request_id == r.pk
    assert check.findings[0]["code"] == "browser_cors_blocked"
