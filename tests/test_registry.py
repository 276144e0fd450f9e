"""The one access query: active servers an email is approved for."""

from __future__ import annotations

from unittest import mock

from django.db import IntegrityError
from django.test import TestCase

from integrations import registry
from integrations.models import ApprovedUser, DicomWebServer
from integrations.validators import parse_email_list
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


class BulkAddRaceTests(TestCase):
    """Another writer approves one of the emails between the bulk add's read
    and its insert (as the admin's form can, taking no lock on the server)."""

    def setUp(self) -> None:
        self.server = make_server(make_institution("Race Hospital"), "PACS")
        approve(self.server, "taken@example.org")

    def test_the_add_runs_again_and_reports_the_email_as_existing(self) -> None:
        real = registry.existing_keys
        stale_then_real = [set(), None]

        def read(server, keys):
            answer = stale_then_real.pop(0)
            return real(server, keys) if answer is None else answer

        with mock.patch.object(registry, "existing_keys", side_effect=read):
            result = registry.add_approved_users(
                self.server, ["new@example.org", "taken@example.org"]
            )
        assert stale_then_real == []  # read twice: the first insert conflicted
        assert result.added == ["new@example.org"]
        assert result.existing == ["taken@example.org"]
        rows = ApprovedUser.objects.filter(server=self.server)
        assert sorted(rows.values_list("email", flat=True)) == [
            "new@example.org",
            "taken@example.org",
        ]
        # No history row of the rolled-back attempt survives.
        history = ApprovedUser.history.filter(email_key="new@example.org")
        assert history.count() == 1

    def test_a_writer_that_keeps_conflicting_ends_in_the_database_error(
        self,
    ) -> None:
        with (
            mock.patch.object(registry, "existing_keys", return_value=set()),
            self.assertRaises(IntegrityError),
        ):
            registry.add_approved_users(self.server, ["taken@example.org"])
        assert ApprovedUser.objects.filter(server=self.server).count() == 1


class OneLoopTests(TestCase):
    def test_chunks_slices_every_item_once_in_order(self) -> None:
        assert list(registry.chunks([1, 2, 3, 4, 5], 2)) == [[1, 2], [3, 4], [5]]
        assert list(registry.chunks([], 2)) == []

    def test_a_paste_and_a_bulk_list_fold_the_same_way(self) -> None:
        values = ["Jane@Example.org", "bad", "JANE@example.org", "b@example.org"]
        pasted = parse_email_list("\n".join(values))
        with self.assertRaises(registry.BulkEmailError) as caught:
            registry.normalise_all(values)
        assert (
            caught.exception.errors
            == pasted.errors
            == [(2, "bad", pasted.errors[0][2])]
        )
        assert registry.normalise_all([v for v in values if v != "bad"]) == (
            pasted.emails
        )
        assert pasted.emails == ["Jane@example.org", "b@example.org"]
        assert pasted.duplicates == 1
