"""Every change to institutions, servers and approved users is kept with who,
when, before and after, bulk paths included."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.test import TestCase

from integrations import audit, registry
from integrations.models import ApprovedUser, DicomWebServer
from tests.factories import make_institution, make_server


class AuditTests(TestCase):
    @classmethod
    def setUpTestData(cls) -> None:
        cls.staff = get_user_model().objects.create_superuser(
            "alice", "a@example.org", "pw-long-enough-1"
        )
        cls.server = make_server(make_institution(), "Main PACS", status="pending")

    def test_an_admin_edit_records_the_user_and_before_and_after(self) -> None:
        self.client.force_login(self.staff)
        server = self.server
        self.client.post(
            f"/admin/integrations/dicomwebserver/{server.pk}/change/",
            {
                "institution": server.institution_id,
                "name": server.name,
                "qido_url": "https://new.example.edu/dicomweb",
                "wado_url": server.wado_url,
                "status": server.status,
                "cors_mode": server.cors_mode,
            },
        )
        latest, previous = server.history.all()[:2]
        assert latest.history_user == self.staff
        assert latest.history_actor == "alice"
        delta = latest.diff_against(previous)
        assert [(c.field, c.old, c.new) for c in delta.changes] == [
            (
                "qido_url",
                "https://pacs.example.edu/dicomweb",
                "https://new.example.edu/dicomweb",
            )
        ]

    def test_a_status_action_records_each_server(self) -> None:
        self.client.force_login(self.staff)
        self.client.post(
            "/admin/integrations/dicomwebserver/",
            {"action": "activate", "_selected_action": [self.server.pk]},
        )
        latest = self.server.history.first()
        assert latest.status == DicomWebServer.Status.ACTIVE
        assert latest.history_user == self.staff

    def test_a_bulk_add_records_one_history_row_per_email_with_the_actor(self) -> None:
        with audit.acting_as(label="api-key:deploy-bot"):
            registry.add_approved_users(self.server, ["a@example.org", "b@example.org"])
        rows = ApprovedUser.history.filter(server_id=self.server.pk)
        assert sorted(rows.values_list("email", "history_type", "history_actor")) == [
            ("a@example.org", "+", "api-key:deploy-bot"),
            ("b@example.org", "+", "api-key:deploy-bot"),
        ]

    def test_a_bulk_add_from_the_admin_names_the_staff_user(self) -> None:
        self.client.force_login(self.staff)
        server = self.server
        self.client.post(
            f"/admin/integrations/dicomwebserver/{server.pk}/change/",
            {
                "institution": server.institution_id,
                "name": server.name,
                "qido_url": server.qido_url,
                "wado_url": server.wado_url,
                "status": server.status,
                "cors_mode": server.cors_mode,
                "add_emails": "x@example.org\ny@example.org",
            },
        )
        rows = ApprovedUser.history.filter(server_id=server.pk)
        assert rows.count() == 2
        assert {row.history_user for row in rows} == {self.staff}

    def test_a_bulk_removal_records_deletions_with_the_actor(self) -> None:
        with audit.acting_as(user=self.staff):
            registry.add_approved_users(self.server, ["a@example.org", "b@example.org"])
            removed = registry.remove_approved_users(
                self.server, ["A@example.org", "missing@example.org"]
            )
        assert removed == ["a@example.org"]
        deletion = ApprovedUser.history.get(history_type="-")
        assert (deletion.email, deletion.history_user, deletion.history_actor) == (
            "a@example.org",
            self.staff,
            "alice",
        )
        assert list(ApprovedUser.objects.values_list("email", flat=True)) == [
            "b@example.org"
        ]

    def test_the_history_page_shows_the_actor(self) -> None:
        with audit.acting_as(label="api-key:deploy-bot"):
            self.server.notes = "changed by a program"
            self.server.save()
        self.client.force_login(self.staff)
        response = self.client.get(
            f"/admin/integrations/dicomwebserver/{self.server.pk}/history/"
        )
        self.assertContains(response, "api-key:deploy-bot")
