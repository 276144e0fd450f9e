"""Every /api/ path answers errors as JSON: a bug is a 500 ``{"detail"}``
without a traceback; the database or the cache not answering is a 503 with
Retry-After, so the uploader can tell an outage from a bug. Elsewhere the
site keeps Django's own error page.

In process here; tests/test_faults.py stops a real PostgreSQL under a
served instance."""

from __future__ import annotations

import logging
from unittest import mock

import redis
from django.conf import settings
from django.db import InterfaceError, OperationalError
from django.test import Client, TestCase

from integrations.api.auth import NOT_PROVIDED
from tests.api_helpers import key_header
from tests.factories import api_key

ACCESS = "/api/v1/access"
SERVERS = "/api/v1/servers/"


class ApiErrorsTests(TestCase):
    @classmethod
    def setUpTestData(cls) -> None:
        cls.key, cls.raw = api_key("automation", "manage")

    def setUp(self) -> None:
        # As a real server answers: the exception becomes a response.
        self.client = Client(raise_request_exception=False)

    def assert_json_error(self, response: object, status: int) -> dict[str, str]:
        self.assertEqual(response.status_code, status)  # type: ignore[attr-defined]
        self.assertEqual(response["Content-Type"], "application/json")  # type: ignore[index]
        body = response.json()  # type: ignore[attr-defined]
        self.assertEqual(list(body), ["detail"])
        self.assertNotIn("Traceback", body["detail"])
        return body

    def test_a_bug_in_a_management_view_is_a_json_500(self) -> None:
        with (
            mock.patch(
                "integrations.api.views.DicomWebServerViewSet.get_queryset",
                side_effect=RuntimeError("secret internals"),
            ),
            self.assertLogs("integrations.api.errors", logging.ERROR),
        ):
            response = self.client.get(SERVERS, **key_header(self.raw))
        body = self.assert_json_error(response, 500)
        self.assertNotIn("secret internals", body["detail"])
        self.assertNotIn("Retry-After", response)

    def test_a_bug_in_the_access_question_is_a_json_500(self) -> None:
        with (
            mock.patch(
                "integrations.api.access.answer", side_effect=KeyError("internals")
            ),
            self.assertLogs("integrations.api.errors", logging.ERROR),
        ):
            response = self.client.get(
                ACCESS, {"email": "jane@university.edu"}, **key_header(self.raw)
            )
        self.assert_json_error(response, 500)

    def test_the_database_down_is_a_503_with_retry_after(self) -> None:
        for error in (
            OperationalError("connection refused"),
            InterfaceError("connection already closed"),
        ):
            with (
                self.subTest(error=type(error).__name__),
                mock.patch("integrations.api.access.answer", side_effect=error),
                self.assertLogs("integrations.api.errors", logging.WARNING) as logs,
            ):
                response = self.client.get(
                    ACCESS, {"email": "jane@university.edu"}, **key_header(self.raw)
                )
            self.assert_json_error(response, 503)
            self.assertEqual(response["Retry-After"], "5")
            # One line, not a traceback per request during an outage.
            self.assertIsNone(logs.records[0].exc_info)

    def test_the_cache_erring_outside_the_fallback_is_a_503(self) -> None:
        with (
            mock.patch(
                "integrations.api.views.DicomWebServerViewSet.get_queryset",
                side_effect=redis.exceptions.ConnectionError("refused"),
            ),
            self.assertLogs("integrations.api.errors", logging.WARNING),
        ):
            response = self.client.get(SERVERS, **key_header(self.raw))
        self.assert_json_error(response, 503)
        self.assertEqual(response["Retry-After"], "5")

    def test_what_a_middleware_raises_under_api_is_json_too(self) -> None:
        with mock.patch(
            "integrations.audit.AuditActorMiddleware.__call__",
            side_effect=OperationalError("the server closed the connection"),
        ):
            outage = self.client.get(SERVERS, **key_header(self.raw))
        self.assert_json_error(outage, 503)
        self.assertEqual(outage["Retry-After"], "5")
        with mock.patch(
            "integrations.audit.AuditActorMiddleware.__call__",
            side_effect=RuntimeError("bug"),
        ):
            bug = self.client.get(ACCESS, **key_header(self.raw))
        self.assert_json_error(bug, 500)

    def test_the_rest_of_the_site_keeps_djangos_error_page(self) -> None:
        with mock.patch(
            "integrations.audit.AuditActorMiddleware.__call__",
            side_effect=RuntimeError("bug"),
        ):
            response = self.client.get("/onboarding/")
        self.assertEqual(response.status_code, 500)
        self.assertTrue(response["Content-Type"].startswith("text/html"))

    def test_too_many_fields_is_a_400_naming_the_limit_json_under_api(self) -> None:
        """Django refuses more than DATA_UPLOAD_MAX_NUMBER_FIELDS; the answer
        says so in words (JSON under /api/), not a bare "Bad Request"."""
        limit = settings.DATA_UPLOAD_MAX_NUMBER_FIELDS
        query = "&".join(["a=1"] * (limit + 1))
        api = self.client.get(f"{SERVERS}?{query}", **key_header(self.raw))
        body = self.assert_json_error(api, 400)
        self.assertIn(f"more than {limit:,} fields", body["detail"])
        form = "&".join(["a=1"] * (limit + 1))
        page = self.client.post(
            "/admin/login/", form, content_type="application/x-www-form-urlencoded"
        )
        self.assertEqual(page.status_code, 400)
        self.assertTrue(page["Content-Type"].startswith("text/html"))
        self.assertIn(f"more than {limit:,} fields", page.content.decode())

    def test_other_bad_requests_keep_djangos_page(self) -> None:
        response = self.client.get("/onboarding/", HTTP_HOST="evil.example")
        self.assertEqual(response.status_code, 400)
        self.assertNotIn("fields", response.content.decode())

    def test_api_errors_drf_handles_itself_are_unchanged(self) -> None:
        response = self.client.get(SERVERS)
        self.assertEqual(response.status_code, 401)
        # DRF's own 401, in its own shape; the words say how to send a key.
        self.assertEqual(response.json(), {"detail": NOT_PROVIDED})
