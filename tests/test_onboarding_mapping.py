"""The request->server mapping is written once, on OnboardingRequest."""

from __future__ import annotations

from django.test import TestCase

from integrations.models import DicomWebServer, OnboardingRequest
from integrations.onboarding import lifecycle
from tests.factories import make_institution, make_server


class LiveFieldsTests(TestCase):
    @classmethod
    def setUpTestData(cls) -> None:
        cls.server = make_server(
            make_institution("University Hospital", contact_name="Ann Lee"),
            "Main PACS",
            cors_mode=DicomWebServer.CorsMode.REVERSE_PROXY,
            needs_credentials=True,
        )

    def test_a_request_describing_a_server_gives_back_its_live_values(self) -> None:
        request = OnboardingRequest(**OnboardingRequest.values_describing(self.server))
        assert request.server_values() == {
            "name": "Main PACS",
            "qido_url": self.server.qido_url,
            "wado_url": self.server.wado_url,
            "cors_mode": "reverse_proxy",
            "needs_credentials": True,
            "pacsbin_proxy": None,
            "edge_enforced": False,
        }
        assert request.institution_values() == {
            "contact_name": "Ann Lee",
            "contact_email": "",
        }

    def test_the_baseline_and_the_differences_cover_every_live_field(self) -> None:
        baseline = lifecycle.baseline_of(self.server)
        for row, live in OnboardingRequest.LIVE_FIELDS.values():
            assert f"{row}.{live}" in baseline
        request = OnboardingRequest(
            server=self.server, **OnboardingRequest.values_describing(self.server)
        )
        request.server_name = "Research"
        rows = lifecycle.differences(request)
        assert [d.label for d in rows] == [
            "Contact name",
            "Contact email",
            "Server name",
            "QIDO URL",
            "WADO URL",
            "How CORS is met",
            "Needs browser credentials",
            "Pacsbin's proxy settings",
            "Enforced at the archive's edge",
        ]
        assert [(d.row, d.field) for d in rows if d.changed] == [("server", "name")]
