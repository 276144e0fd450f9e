"""A DIMSE institution's status page: a download of config.jsonc, the steps
to run Pacsbin's proxy with it, and only the CORS guidance that applies."""

from __future__ import annotations

import re
from typing import Any

from django.test import TestCase

from integrations.connectivity import proxyconfig
from integrations.models import OnboardingRequest
from integrations.onboarding import status_checks
from integrations.onboarding.links import status_link
from tests.onboarding_helpers import FreshRateLimit, form_data

PROXY = "https://pacs-proxy.hospital.example"


def dimse(**overrides: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "qido_url": "",
        "cors_mode": None,
        "archive_speaks": "dimse",
        "archive_ae_title": "PACS_SERVER",
        "archive_host": "10.1.2.3",
        "archive_port": "11112",
        "proxy_url": PROXY + "/",
        "proxy_ae_title": "PACSBIN_PROXY",
        "proxy_dimse_port": "8888",
    }
    return form_data(**{**values, **overrides})


class DimseStatusPageTests(FreshRateLimit, TestCase):
    def setUp(self) -> None:
        super().setUp()
        assert self.client.post("/onboarding/", dimse()).status_code == 302
        self.r = OnboardingRequest.objects.get()
        self.base = f"/onboarding/status/{status_link(self.r)}/"

    def test_the_config_downloads_as_the_page_shows_it(self) -> None:
        page = self.client.get(self.base).content.decode()
        link = re.search(r'id="pacsbin-config-download" href="([^"]+)"', page)
        assert link and link.group(1) == self.base + "config.jsonc"
        response = self.client.get(link.group(1))
        assert response.status_code == 200
        assert response["Content-Type"] == "text/plain; charset=utf-8"
        assert response["Content-Disposition"] == 'attachment; filename="config.jsonc"'
        expected = status_checks.pacsbin_view(self.r)
        assert expected is not None
        assert response.content.decode() == expected.config
        assert '"proxyMode": "dimse"' in expected.config

    def test_the_page_gives_the_steps_to_run_the_proxy(self) -> None:
        page = self.client.get(self.base).content.decode()
        steps = re.search(r'<ol class="steps" id="pacsbin-steps".*?</ol>', page, re.S)
        assert steps
        text = steps.group(0)
        for needed in (
            "Node.js",
            "npm install",
            "node dist/index.js config.jsonc",
            f"{PROXY}/ping",
            "archive-sheet-title",  # register the proxy with the archive
        ):
            assert needed in text, needed

    def test_the_cors_card_keeps_only_the_guidance_for_the_proxy(self) -> None:
        page = self.client.get(self.base).content.decode()
        card = re.search(r'aria-labelledby="cors-title">.*?</section>', page, re.S)
        assert card
        assert "Name Authorization" not in card.group(0)
        assert "error answers" not in card.group(0)
        assert "ready-made reverse proxy" not in card.group(0)

    def test_a_bad_link_or_a_request_without_the_proxy_has_no_download(
        self,
    ) -> None:
        assert self.client.get(
            "/onboarding/status/nonsense/config.jsonc"
        ).status_code in (
            404,
            410,
        )
        self.client.post(
            "/onboarding/",
            form_data(institution_name="Other", contact_email="o@other.example"),
        )
        other = OnboardingRequest.objects.exclude(pk=self.r.pk).get()
        response = self.client.get(
            f"/onboarding/status/{status_link(other)}/config.jsonc"
        )
        assert response.status_code == 404


class DirectArchiveGuidanceTests(FreshRateLimit, TestCase):
    def test_an_archive_configured_by_hand_still_gets_both_notes(self) -> None:
        self.client.post("/onboarding/", form_data(cors_mode="direct"))
        r = OnboardingRequest.objects.get()
        page = self.client.get(f"/onboarding/status/{status_link(r)}/").content.decode()
        assert "Name Authorization" in page
        assert "error answers" in page
        assert proxyconfig.behind_pacsbin_proxy(status_checks.server_for(r)) is False
