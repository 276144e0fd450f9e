"""From the contact's status page, in Debian's Chromium: the browser check
runs through Pacsbin's real proxy (dimse mode, in front of Orthanc's DIMSE
port), with the config.jsonc the page itself offers, and is recorded ok."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from integrations.connectivity import proxyconfig
from integrations.models import ConnectivityCheck
from integrations.onboarding import status_checks
from tests import peers
from tests.factories import submitted_request
from tests.onboarding_helpers import fresh_cache
from tests.test_onboarding_browser import (  # noqa: F401 -- chromium is a fixture
    chromium,
)
from tests.test_status_page_browser_check import run_the_check

pytestmark = [
    pytest.mark.browser,
    pytest.mark.peers,
    pytest.mark.django_db(transaction=True),
]


def test_the_browser_check_through_the_proxy_is_recorded_ok(
    chromium: str,  # noqa: F811
    live_server: Any,
    orthanc_dimse: peers.Orthanc,
    pacsbin_proxy_entry: Path,
    tmp_path: Path,
    settings: Any,
) -> None:
    settings.CACHES = fresh_cache()
    base = live_server.url
    # The page runs on the registry's own origin, which the config allows
    # because REGISTRY_PUBLIC_ORIGIN names it (DESIGN.md).
    settings.UPLOADER_ORIGINS = ["https://pacsbin.com"]
    settings.REGISTRY_PUBLIC_ORIGIN = base
    port, dimse_port = peers.free_port(), peers.free_port()
    aet = "PB" + uuid.uuid4().hex[:10].upper()
    origin = f"http://127.0.0.1:{port}"
    r = submitted_request(
        qido_url=origin,
        wado_url=origin,
        cors_mode="dimse_proxy",
        pacsbin_proxy={
            "mode": "dimse",
            "archive_ae_title": orthanc_dimse.aet,
            "archive_host": "127.0.0.1",
            "archive_port": orthanc_dimse.dicom_port,
            "proxy_ae_title": aet,
            "proxy_dimse_port": dimse_port,
        },
    )
    # The configuration the status page offers for this request.
    view = status_checks.pacsbin_view(r)
    assert view is not None and view.config
    assert view.config == proxyconfig.render(status_checks.server_for(r), "pacsbin")
    orthanc_dimse.register_modality(aet, aet, "127.0.0.1", dimse_port)
    try:
        with peers.pacsbin_proxy(pacsbin_proxy_entry, tmp_path, view.config, port=port):
            seen = run_the_check(base, r, shot="status-browser-check-pacsbin-proxy.png")
    finally:
        orthanc_dimse.unregister_modality(aet)

    assert seen["outcome"] == "ok", seen["text"]
    assert seen["problems"] == []
    check = ConnectivityCheck.objects.get()
    assert (check.source, check.origin, check.outcome) == ("browser", base, "ok")
    assert check.onboarding_request_id == r.pk
    assert (
        "1 study" in check.findings[0]["message"]
        or "studies" in (check.findings[0]["message"])
    )


def test_before_the_archive_knows_the_proxy_the_browser_says_so(
    chromium: str,  # noqa: F811
    live_server: Any,
    orthanc_dimse: peers.Orthanc,
    pacsbin_proxy_entry: Path,
    tmp_path: Path,
    settings: Any,
) -> None:
    settings.CACHES = fresh_cache()
    base = live_server.url
    settings.UPLOADER_ORIGINS = ["https://pacsbin.com"]
    settings.REGISTRY_PUBLIC_ORIGIN = base
    port, dimse_port = peers.free_port(), peers.free_port()
    origin = f"http://127.0.0.1:{port}"
    r = submitted_request(
        qido_url=origin,
        wado_url=origin,
        cors_mode="dimse_proxy",
        pacsbin_proxy={
            "mode": "dimse",
            "archive_ae_title": orthanc_dimse.aet,
            "archive_host": "127.0.0.1",
            "archive_port": orthanc_dimse.dicom_port,
            "proxy_ae_title": "PB" + uuid.uuid4().hex[:10].upper(),
            "proxy_dimse_port": dimse_port,
        },
    )
    config = proxyconfig.render(status_checks.server_for(r), "pacsbin")
    with peers.pacsbin_proxy(pacsbin_proxy_entry, tmp_path, config, port=port):
        seen = run_the_check(base, r)

    assert seen["outcome"] == "unreachable", seen["text"]
    check = ConnectivityCheck.objects.get()
    assert check.findings[0]["code"] == "browser_proxy_archive_refused"
    assert "register the proxy's AE title" in check.findings[0]["message"]


def test_the_form_shows_the_dimse_questions_when_the_archive_speaks_only_dimse(
    chromium: str,  # noqa: F811
    live_server: Any,
    settings: Any,
) -> None:
    """The public form in Chromium: choosing "Only DIMSE" shows the proxy's
    questions and hides the DICOMweb ones; a refused submission comes back
    with the same part shown, the errors by field and the typed text kept."""
    from tests.test_onboarding_browser import browser_page

    settings.CACHES = fresh_cache()
    with browser_page() as page:
        page.goto(f"{live_server.url}/onboarding/")  # type: ignore[attr-defined]
        assert not page.is_visible("#id_archive_ae_title")  # type: ignore[attr-defined]
        assert page.is_visible("#id_qido_url")  # type: ignore[attr-defined]
        page.check("#id_archive_speaks_1")  # type: ignore[attr-defined]
        assert page.is_visible("#id_archive_ae_title")  # type: ignore[attr-defined]
        assert page.is_visible("#id_proxy_url")  # type: ignore[attr-defined]
        assert not page.is_visible("#id_qido_url")  # type: ignore[attr-defined]
        page.fill("#id_institution_name", "County General")  # type: ignore[attr-defined]
        page.fill("#id_contact_name", "Pat Admin")  # type: ignore[attr-defined]
        page.fill("#id_contact_email", "pat@county.example")  # type: ignore[attr-defined]
        page.fill("#id_server_name", "County PACS")  # type: ignore[attr-defined]
        page.fill("#id_archive_ae_title", "PACS_SERVER")  # type: ignore[attr-defined]
        page.fill("#id_archive_host", "10.1.2.3")  # type: ignore[attr-defined]
        page.fill("#id_archive_port", "99999")  # type: ignore[attr-defined]
        page.fill("#id_proxy_url", "https://pacs-proxy.county.example")  # type: ignore[attr-defined]
        page.fill("#id_emails", "jane@county.example")  # type: ignore[attr-defined]
        page.click("button[type=submit]")  # type: ignore[attr-defined]
        page.wait_for_selector("#error-summary")  # type: ignore[attr-defined]
        assert "is not a port" in page.text_content("#error-summary")  # type: ignore[attr-defined]
        assert page.is_visible("#id_archive_port")  # type: ignore[attr-defined]
        assert page.input_value("#id_archive_port") == "99999"  # type: ignore[attr-defined]
        assert page.input_value("#id_archive_ae_title") == "PACS_SERVER"  # type: ignore[attr-defined]
        page.fill("#id_archive_port", "11112")  # type: ignore[attr-defined]
        page.click("button[type=submit]")  # type: ignore[attr-defined]
        page.wait_for_url("**/onboarding/submitted/**")  # type: ignore[attr-defined]
        assert page.problems == []  # type: ignore[attr-defined]
