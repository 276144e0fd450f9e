"""Changes sent later from the status link become new requests for review,
never applied directly."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.test import TestCase

from integrations.models import DicomWebServer, OnboardingRequest
from integrations.onboarding import approve_request
from integrations.onboarding.links import status_link
from tests.factories import (
    submitted_request,
)
from tests.onboarding_helpers import (
    FreshRateLimit,
)


class TheChangeForm(FreshRateLimit, TestCase):
    @classmethod
    def setUpTestData(cls) -> None:
        reviewer = get_user_model().objects.create_user("reviewer", is_staff=True)
        cls.origin = submitted_request()
        cls.server = approve_request(cls.origin, reviewer).server
        cls.url = f"/onboarding/status/{status_link(cls.origin)}/change/"

    def change(self, **overrides: str | None) -> dict[str, str]:
        data = {
            "contact_name": "Pat Admin",
            "contact_email": "pat.admin@st-example.org",
            "server_name": "Main PACS",
            "qido_url": "https://pacs.st-example.org/dicomweb",
            "wado_same": "on",
            "cors_mode": "reverse_proxy",
            "emails_to_add": "",
            "emails_to_remove": "",
            "notes": "",
            "leave_blank": "",
            **overrides,
        }
        return {key: value for key, value in data.items() if value is not None}

    def test_it_is_prefilled_with_the_live_values(self) -> None:
        html = self.client.get(self.url).content.decode()
        self.assertIn('value="https://pacs.st-example.org/dicomweb"', html)
        self.assertIn('value="Main PACS"', html)
        self.assertRegex(html, r'value="reverse_proxy"[^>]*checked')

    def test_a_change_becomes_a_new_request_and_the_live_data_is_untouched(
        self,
    ) -> None:
        response = self.client.post(
            self.url,
            self.change(
                qido_url="https://new.st-example.org/dicomweb/",
                emails_to_add="carol@st-example.org",
                emails_to_remove="bob@st-example.org",
            ),
        )
        self.assertEqual(response.status_code, 302)
        update = OnboardingRequest.objects.get(kind="update")
        self.assertEqual(update.status, "submitted")
        self.assertNotEqual(update.reference, self.origin.reference)
        self.assertEqual(update.server, self.server)
        self.assertEqual(update.submitted_from, self.origin)
        self.assertEqual(update.institution_name, "St. Example Hospital")
        self.assertEqual(update.qido_url, "https://new.st-example.org/dicomweb")
        self.assertEqual(update.emails_to_add, ["carol@st-example.org"])
        self.assertEqual(update.emails_to_remove, ["bob@st-example.org"])
        self.assertEqual(update.baseline["server.qido_url"], self.server.qido_url)
        self.assertIn(status_link(update), response["Location"])
        server = DicomWebServer.objects.get()
        self.assertEqual(server.qido_url, "https://pacs.st-example.org/dicomweb")
        self.assertEqual(server.approved_users.count(), 2)

    def test_bad_lines_in_either_list_are_reported_by_line(self) -> None:
        response = self.client.post(
            self.url,
            self.change(emails_to_add="ok@st-example.org\nbad@", emails_to_remove="x"),
        )
        self.assertEqual(response.status_code, 400)
        html = response.content.decode()
        self.assertIn("Line 2: “bad@” is not a valid email address", html)
        self.assertIn("Line 1: “x” is not a valid email address", html)
        self.assertEqual(OnboardingRequest.objects.filter(kind="update").count(), 0)

    def test_an_address_in_both_lists_is_refused(self) -> None:
        response = self.client.post(
            self.url,
            self.change(
                emails_to_add="Carol@st-example.org",
                emails_to_remove="carol@st-example.org",
            ),
        )
        self.assertContains(response, "in both lists", status_code=400)

    def test_a_tampered_link_cannot_send_changes(self) -> None:
        response = self.client.post(self.url.replace(":", ":x"), self.change())
        self.assertEqual(response.status_code, 404)
        self.assertEqual(OnboardingRequest.objects.count(), 1)

    def test_the_status_page_lists_changes_sent_from_it(self) -> None:
        self.client.post(self.url, self.change(server_name="Renamed"))
        update = OnboardingRequest.objects.get(kind="update")
        html = self.client.get(f"/onboarding/status/{status_link(self.origin)}/")
        self.assertContains(html, update.reference)
