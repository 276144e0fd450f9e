"""The one access query: active servers an email is approved for."""

from __future__ import annotations

from django.test import TestCase

from integrations import registry
from integrations.models import DicomWebServer
from tests.factories import approve, make_institution, make_server


class ApprovedServersForTests(TestCase):
    @classmethod
    def setUpTestData(cls) -> None:
        zeta = make_institution("Zeta Clinic")
        alpha = make_institution("alpha hospital")
        cls.z = make_server(zeta, "Z PACS")
        cls.a2 = make_server(alpha, "b archive")
        cls.a1 = make_server(alpha, "A archive")
        cls.pending = make_server(alpha, "C pending", status="pending")
        for server in (cls.z, cls.a2, cls.a1, cls.pending):
            approve(server, "Jane@Example.org")
        approve(cls.z, "other@example.org")

    def test_only_active_servers_ordered_by_institution_then_name_ignoring_case(
        self,
    ) -> None:
        servers = DicomWebServer.objects.approved_for("jane@example.org")
        assert [s.name for s in servers] == ["A archive", "b archive", "Z PACS"]

    def test_staff_view_includes_every_status(self) -> None:
        servers = DicomWebServer.objects.approved_for(
            "JANE@example.org", active_only=False
        )
        assert [s.name for s in servers] == [
            "A archive",
            "b archive",
            "C pending",
            "Z PACS",
        ]

    def test_an_unknown_email_sees_nothing(self) -> None:
        assert list(DicomWebServer.objects.approved_for("nobody@example.org")) == []

    def test_bulk_add_reports_added_and_existing_in_normalised_form(self) -> None:
        result = registry.add_approved_users(
            self.a1, ["new@Example.org", "jane@example.org"]
        )
        assert result.added == ["new@example.org"]
        assert result.existing == ["jane@example.org"]

    def test_normalise_all_names_every_bad_value_by_position(self) -> None:
        with self.assertRaises(registry.BulkEmailError) as caught:
            registry.normalise_all(["ok@example.org", "bad", "worse@"])
        assert [(pos, value) for pos, value, _ in caught.exception.errors] == [
            (2, "bad"),
            (3, "worse@"),
        ]
