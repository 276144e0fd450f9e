"""The "Approve emails" paste box on the admin server page."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.test import TestCase

from integrations.models import ApprovedUser
from tests.factories import approve, make_institution, make_server


class PasteBoxTests(TestCase):
    @classmethod
    def setUpTestData(cls) -> None:
        cls.staff = get_user_model().objects.create_superuser(
            "staff", "s@example.org", "pw-long-enough-1"
        )
        cls.server = make_server(make_institution(), "Main PACS")

    def setUp(self) -> None:
        self.client.force_login(self.staff)

    def post(self, pasted: str) -> Any:
        server = self.server
        return self.client.post(
            f"/admin/integrations/dicomwebserver/{server.pk}/change/",
            {
                "institution": server.institution_id,
                "name": server.name,
                "qido_url": server.qido_url,
                "wado_url": server.wado_url,
                "status": server.status,
                "cors_mode": server.cors_mode,
                "add_emails": pasted,
            },
            follow=True,
        )

    def emails(self) -> list[str]:
        return sorted(
            ApprovedUser.objects.filter(server=self.server).values_list(
                "email", flat=True
            )
        )

    def test_all_good_lines_are_approved_with_duplicates_folded(self) -> None:
        response = self.post(
            "jane@university.edu\n"
            "John@University.edu, jane@UNIVERSITY.edu; amy@university.edu"
        )
        self.assertContains(response, "Approved 3 new email(s).")
        assert self.emails() == [
            "John@university.edu",
            "amy@university.edu",
            "jane@university.edu",
        ]

    def test_already_approved_emails_are_reported_not_duplicated(self) -> None:
        approve(self.server, "jane@university.edu")
        response = self.post("Jane@university.edu\nnew@university.edu")
        self.assertContains(response, "Approved 1 new email(s).")
        self.assertContains(response, "Already approved (1): Jane@university.edu")
        assert self.emails() == ["jane@university.edu", "new@university.edu"]

    def test_all_bad_lines_are_reported_and_nothing_is_written(self) -> None:
        response = self.post("not-an-email\njane@")
        assert response.status_code == 200
        self.assertContains(
            response, "Line 1: “not-an-email” is not a valid email address"
        )
        self.assertContains(response, "Line 2: “jane@” is not a valid email address")
        assert self.emails() == []

    def test_one_bad_line_among_good_ones_writes_nothing_and_names_it(self) -> None:
        response = self.post(
            "a@university.edu\nb@university.edu\nc@@university.edu\nd@university.edu"
        )
        self.assertContains(response, "Line 3: “c@@university.edu”")
        self.assertNotContains(response, "Line 1")
        assert self.emails() == []

    def test_a_bad_paste_also_leaves_the_server_fields_unchanged(self) -> None:
        server = self.server
        self.client.post(
            f"/admin/integrations/dicomwebserver/{server.pk}/change/",
            {
                "institution": server.institution_id,
                "name": "Renamed",
                "qido_url": server.qido_url,
                "wado_url": server.wado_url,
                "status": server.status,
                "cors_mode": server.cors_mode,
                "add_emails": "oops",
            },
        )
        server.refresh_from_db()
        assert server.name == "Main PACS"
