"""A new server whose name its institution already uses: the review page says
so before Approve, and staff can correct the name there."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.test import TestCase

from integrations.models import DicomWebServer, OnboardingRequest
from tests.factories import make_institution, make_server, submitted_request


class NameClashTests(TestCase):
    @classmethod
    def setUpTestData(cls) -> None:
        cls.staff = get_user_model().objects.create_superuser(
            "boss", "boss@pacsbin.example", "pw"
        )
        institution = make_institution("St. Example Hospital")
        make_server(institution, "Main PACS")

    def setUp(self) -> None:
        self.client.force_login(self.staff)
        self.r = submitted_request(server_name="main pacs")

    def url(self, action: str = "change") -> str:
        return f"/admin/integrations/onboardingrequest/{self.r.pk}/{action}/"

    def test_the_review_page_shows_the_clash_next_to_the_name(self) -> None:
        html = self.client.get(self.url()).content.decode()
        assert 'id="name-clash"' in html
        assert "already has a server named “main pacs”" in html
        assert 'name="server_name"' in html and 'value="main pacs"' in html

    def test_approving_under_a_corrected_name_creates_the_server(self) -> None:
        response = self.client.post(
            self.url("approve"), {"activate": "on", "server_name": " Research  PACS "}
        )
        assert response.status_code == 302
        self.r.refresh_from_db()
        assert self.r.status == OnboardingRequest.Status.APPROVED
        assert self.r.server_name == "Research PACS"
        assert sorted(DicomWebServer.objects.values_list("name", flat=True)) == [
            "Main PACS",
            "Research PACS",
        ]

    def test_approving_under_the_clashing_name_writes_nothing(self) -> None:
        response = self.client.post(
            self.url("approve"),
            {"activate": "on", "server_name": "MAIN PACS"},
            follow=True,
        )
        self.assertContains(response, "MAIN PACS")
        self.r.refresh_from_db()
        assert self.r.status == OnboardingRequest.Status.SUBMITTED
        assert self.r.server_name == "main pacs"
        assert DicomWebServer.objects.count() == 1

    def test_an_odd_name_is_refused_by_name(self) -> None:
        for bad in ("", "   ", "nul\x00name", "del\x7fname", "x" * 201):
            response = self.client.post(
                self.url("approve"), {"server_name": bad}, follow=True
            )
            assert response.status_code == 200
            self.r.refresh_from_db()
            assert self.r.status == OnboardingRequest.Status.SUBMITTED
        assert DicomWebServer.objects.count() == 1

    def test_no_clash_no_message(self) -> None:
        other = submitted_request(server_name="Cardiology PACS")
        html = self.client.get(
            f"/admin/integrations/onboardingrequest/{other.pk}/change/"
        ).content.decode()
        assert "name-clash" not in html
