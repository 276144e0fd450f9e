"""The admin pages a staffer uses all day: lists, filters, search, actions and
the "what does this email see?" lookup."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.test import TestCase

from integrations.models import DicomWebServer
from tests.factories import approve, make_institution, make_server


class AdminPagesTests(TestCase):
    @classmethod
    def setUpTestData(cls) -> None:
        cls.staff = get_user_model().objects.create_superuser(
            "staff", "s@example.org", "pw-long-enough-1"
        )
        university = make_institution("University Hospital")
        county = make_institution("County General")
        cls.active = make_server(
            university,
            "University PACS",
            qido_url="https://pacs.university.edu/dicomweb",
        )
        cls.pending = make_server(
            county,
            "County VNA",
            status="pending",
            qido_url="https://vna.county.org/dicom-web",
        )
        cls.suspended = make_server(
            county,
            "Old PACS",
            status="suspended",
            qido_url="https://old.county.org/dicomweb",
        )
        approve(cls.active, "Jane.Doe@university.edu")
        approve(cls.pending, "jane.doe@university.edu")

    def setUp(self) -> None:
        self.client.force_login(self.staff)

    def listed(self, query: str) -> list[str]:
        response = self.client.get(f"/admin/integrations/dicomwebserver/?{query}")
        assert response.status_code == 200
        return sorted(server.name for server in response.context["cl"].result_list)

    def test_every_admin_page_renders(self) -> None:
        for url in [
            "/admin/",
            "/admin/integrations/institution/",
            f"/admin/integrations/institution/{self.active.institution_id}/change/",
            "/admin/integrations/institution/add/",
            "/admin/integrations/dicomwebserver/",
            f"/admin/integrations/dicomwebserver/{self.active.pk}/change/",
            "/admin/integrations/dicomwebserver/add/",
            f"/admin/integrations/dicomwebserver/{self.active.pk}/history/",
            "/admin/integrations/approveduser/",
            "/admin/integrations/approveduser/add/",
            "/admin/integrations/approveduser/lookup/",
        ]:
            assert self.client.get(url).status_code == 200, url

    def test_the_server_list_filters_by_status_and_institution(self) -> None:
        assert self.listed("status__exact=pending") == ["County VNA"]
        assert self.listed(f"institution__id__exact={self.pending.institution_id}") == [
            "County VNA",
            "Old PACS",
        ]

    def test_the_server_list_searches_institution_name_url_and_email(self) -> None:
        assert self.listed("q=county") == ["County VNA", "Old PACS"]
        assert self.listed("q=old.county.org") == ["Old PACS"]
        assert self.listed("q=JANE.DOE@university.edu") == [
            "County VNA",
            "University PACS",
        ]

    def test_the_server_page_links_to_its_paginated_approved_users(self) -> None:
        response = self.client.get(
            f"/admin/integrations/dicomwebserver/{self.active.pk}/change/"
        )
        self.assertContains(
            response,
            f"/admin/integrations/approveduser/?server__id__exact={self.active.pk}",
        )
        users = self.client.get(
            f"/admin/integrations/approveduser/?server__id__exact={self.active.pk}&q=jane"
        )
        assert [u.email for u in users.context["cl"].result_list] == [
            "Jane.Doe@university.edu"
        ]

    def test_suspend_and_activate_actions_change_status(self) -> None:
        self.client.post(
            "/admin/integrations/dicomwebserver/",
            {
                "action": "suspend",
                "_selected_action": [self.active.pk, self.pending.pk],
            },
        )
        assert set(DicomWebServer.objects.values_list("status", flat=True)) == {
            "suspended"
        }
        self.client.post(
            "/admin/integrations/dicomwebserver/",
            {"action": "activate", "_selected_action": [self.pending.pk]},
        )
        self.pending.refresh_from_db()
        assert self.pending.status == "active"

    def test_the_lookup_shows_every_approval_and_whether_the_uploader_gets_it(
        self,
    ) -> None:
        response = self.client.get(
            "/admin/integrations/approveduser/lookup/?email=%20JANE.doe@University.edu%20"
        )
        assert [s.name for s in response.context["servers"]] == [
            "County VNA",
            "University PACS",
        ]
        self.assertContains(response, "No — the server is pending")
        self.assertContains(response, "Yes")

    def test_the_lookup_names_a_malformed_email(self) -> None:
        response = self.client.get(
            "/admin/integrations/approveduser/lookup/?email=nope"
        )
        self.assertContains(response, "“nope” is not a valid email address")
        assert response.context["servers"] is None

    def test_the_lookup_says_when_an_email_has_no_approval(self) -> None:
        response = self.client.get(
            "/admin/integrations/approveduser/lookup/?email=nobody@example.org"
        )
        self.assertContains(response, "not approved for any server")

    def test_the_admin_needs_a_staff_login(self) -> None:
        self.client.logout()
        response = self.client.get(
            "/admin/integrations/approveduser/lookup/?email=x@example.org"
        )
        assert response.status_code == 302
        assert response["Location"].startswith("/admin/login/")
