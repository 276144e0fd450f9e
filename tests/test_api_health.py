"""GET /api/v1/health: no authentication; 503 when the database is down."""

from __future__ import annotations

from unittest import mock

from django.db import OperationalError
from django.test import TestCase


class HealthTests(TestCase):
    URL = "/api/v1/health"

    def test_it_answers_ok_without_credentials(self) -> None:
        response = self.client.get(self.URL)
        self.assertEqual(response.status_code, 200)
        self.assertEqual(response.json(), {"status": "ok", "cache": "ok"})
        self.assertEqual(response["Cache-Control"], "no-store")

    def test_a_bad_credential_does_not_matter(self) -> None:
        response = self.client.get(self.URL, HTTP_AUTHORIZATION="Api-Key nonsense")
        self.assertEqual(response.status_code, 200)

    def test_it_answers_503_when_the_database_does_not_answer(self) -> None:
        with mock.patch(
            "django.db.backends.base.base.BaseDatabaseWrapper.cursor",
            side_effect=OperationalError("connection refused"),
        ):
            response = self.client.get(self.URL)
        self.assertEqual(response.status_code, 503)
        self.assertEqual(response.json(), {"status": "unavailable", "cache": "ok"})
        self.assertEqual(response["Retry-After"], "5")

    def test_it_costs_one_query(self) -> None:
        with self.assertNumQueries(1):
            self.client.get(self.URL)
