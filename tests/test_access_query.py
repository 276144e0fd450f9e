"""The access question's own reading of the query string and its direct
cursor: the same answers as Django's, one statement per answer."""

from __future__ import annotations

from typing import Any
from unittest import mock

from django.db import connection
from django.test import RequestFactory, SimpleTestCase, TestCase
from hypothesis import given, settings
from hypothesis import strategies as st

from integrations.api import access
from tests.factories import approve, make_institution, make_server

# Pieces a query string is made of, the awkward ones included.
_PIECES = st.sampled_from(
    [
        "email",
        "format",
        "=",
        "&",
        "&&",
        "+",
        "%",
        "%40",
        "%2B",
        "%zz",
        "%C3%A9",
        "%ff",
        "%00",
        ";",
        "a",
        "Jane.Doe",
        "@",
        "example.org",
        "ohif",
        "json",
        "é",
        " ",
        "#",
        "?",
        "/",
        "%E2%80%A8",
    ]
)


def via_django(text: str) -> dict[str, str]:
    request = RequestFactory().get("/api/v1/access", QUERY_STRING=text)
    return {name: request.GET[name] for name in request.GET}


def via_access(text: str) -> dict[str, str]:
    request = RequestFactory().get("/api/v1/access", QUERY_STRING=text)
    return access.query(request)


class QueryStringTests(SimpleTestCase):
    def test_the_uploaders_question_reads_as_django_reads_it(self) -> None:
        for text in [
            "email=jane.doe%40university.example",
            "email=Jane+Doe%2Btag@example.org&format=ohif",
            "format=json&email=a@b.example&email=c@d.example",
            "email=&format",
            "",
            "&&email=x%ZZ%e9@y.example",
        ]:
            with self.subTest(text=text):
                self.assertEqual(via_access(text), via_django(text))

    @settings(max_examples=300, deadline=None)
    @given(st.lists(_PIECES, max_size=12).map("".join))
    def test_any_query_string_reads_as_django_reads_it(self, text: str) -> None:
        self.assertEqual(via_access(text), via_django(text))

    def test_the_values_are_read_once_per_request(self) -> None:
        request = RequestFactory().get("/api/v1/access?email=a%40b.example")
        self.assertIs(access.query(request), access.query(request))


class DirectCursorTests(TestCase):
    """In production (no query log) the access query goes to the driver's
    cursor: one statement per answer, the same rows as Django's cursor."""

    @classmethod
    def setUpTestData(cls) -> None:
        institution = make_institution("Alpha Hospital")
        for name in ("b PACS", "A VNA"):
            approve(make_server(institution, name), "jane@alpha.example")

    def test_one_statement_per_answer_on_the_drivers_cursor(self) -> None:
        self.assertFalse(connection.queries_logged)
        statements: list[str] = []
        real_fetch = access._fetch

        def counting(conn: Any, sql: str, params: list[Any]) -> list[Any]:
            statements.append(sql)
            return real_fetch(conn, sql, params)

        with mock.patch.object(access, "_fetch", counting):
            direct = access.rows("jane@alpha.example")
            access.rows("nobody@alpha.example")
        self.assertEqual(len(statements), 2)
        self.assertEqual([row["name"] for row in direct], ["A VNA", "b PACS"])
        with self.assertNumQueries(1):  # recorded: Django's cursor, same SQL
            self.assertEqual(access.rows("jane@alpha.example"), direct)
        if connection.vendor == "sqlite":
            self.assertNotIn("%s", statements[0])
            self.assertEqual(statements[0].count("?"), 2)

    def test_a_database_error_is_djangos_error(self) -> None:
        from django.db import DatabaseError

        query = access._compiled("default")
        with self.assertRaises(DatabaseError):
            access._fetch(connection, query.driver_sql + " nonsense", ["x", "y"])
