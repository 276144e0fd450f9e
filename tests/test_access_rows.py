from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import connection
from django.test import SimpleTestCase, TestCase

from integrations import registry
from integrations.api import access
from integrations.models import DicomWebServer
from integrations.validators import normalize_email
from tests.factories import approve, make_institution, make_server

JANE = "jane.doe@university.example"


class AccessRowsTests(TestCase):
    """The hot path runs the SQL of approved_for, compiled once."""

    @classmethod
    def setUpTestData(cls) -> None:
        zeta = make_institution("zeta Clinic")
        alpha = make_institution("Alpha Hospital")
        cls.servers = [
            make_server(zeta, "b PACS"),
            make_server(zeta, "A VNA"),
            make_server(alpha, "Research", status=DicomWebServer.Status.PENDING),
            make_server(alpha, "main"),
            make_server(alpha, "Old", status=DicomWebServer.Status.SUSPENDED),
        ]
        for server in cls.servers:
            approve(server, JANE)
        approve(cls.servers[0], "other@university.example")

    def expected(self, email: str) -> list[dict]:
        return list(DicomWebServer.objects.approved_for(email).values(*access.FIELDS))

    def test_it_answers_exactly_what_the_queryset_answers_in_its_order(self) -> None:
        rows = access.rows(JANE)
        self.assertEqual(rows, self.expected(JANE))
        self.assertEqual(
            [(row["institution__name"], row["name"]) for row in rows],
            [
                ("Alpha Hospital", "main"),
                ("zeta Clinic", "A VNA"),
                ("zeta Clinic", "b PACS"),
            ],
        )

    def test_it_costs_one_query(self) -> None:
        access.rows(JANE)  # compiles the SQL
        with self.assertNumQueries(1):
            access.rows("other@university.example")

    def test_it_matches_ignoring_case_and_knows_no_stranger(self) -> None:
        self.assertEqual(
            len(access.rows(normalize_email("JANE.DOE@University.Example"))), 3
        )
        self.assertEqual(access.rows("nobody@university.example"), [])

    def test_a_change_to_the_registry_is_seen_by_the_next_call(self) -> None:
        self.assertEqual(len(access.rows(JANE)), 3)
        registry.set_status(
            DicomWebServer.objects.filter(pk=self.servers[2].pk),
            DicomWebServer.Status.ACTIVE,
        )
        self.assertEqual(len(access.rows(JANE)), 4)
        registry.remove_approved_users(self.servers[0], [JANE])
        self.assertEqual(access.rows(JANE), self.expected(JANE))
        self.assertEqual(len(access.rows(JANE)), 3)


class RememberedNormalisationTests(SimpleTestCase):
    def test_a_remembered_address_gives_the_same_normal_form(self) -> None:
        first = normalize_email("  Ada.Lovelace@EXAMPLE.org ")
        self.assertEqual(normalize_email("Ada.Lovelace@EXAMPLE.org"), first)
        self.assertEqual(first, "Ada.Lovelace@example.org")

    def test_a_bad_address_is_refused_every_time(self) -> None:
        for _ in range(2):
            with self.assertRaisesMessage(
                ValidationError, "“not-an-email” is not a valid"
            ):
                normalize_email("not-an-email")


class PreparedOnPostgresqlTests(TestCase):
    """psycopg prepares the access query itself (server-side binding): no
    PREPARE of our own, and PostgreSQL plans it once per connection."""

    def test_after_a_few_answers_the_access_query_is_a_prepared_statement(
        self,
    ) -> None:
        if connection.vendor != "postgresql":
            self.skipTest("PostgreSQL only")
        for _ in range(6):
            access.rows(JANE)
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT statement FROM pg_prepared_statements WHERE statement LIKE %s",
                ["%integrations_approveduser%"],
            )
            statements = [row[0] for row in cursor.fetchall()]
        self.assertEqual(len(statements), 1, statements)
        self.assertIn("$1", statements[0])
        self.assertEqual(access.rows(JANE), [])
