"""CORS: only the uploader's origins, only on the access question."""

from __future__ import annotations

from django.contrib.auth.models import User
from django.test import TestCase, override_settings

from tests.api_helpers import (
    fresh_throttle_cache,
    key_header,
)
from tests.factories import (
    api_key,
)

URL = "/api/v1/access"
ORIGIN = "https://pacsbin.com"
ALLOW = "access-control-allow-origin"


@override_settings(ACCESS_THROTTLE_RATE=None)
class AccessCorsTests(TestCase):
    @classmethod
    def setUpTestData(cls) -> None:
        cls.key, cls.raw = api_key("uploader", "manage")

    def ask(self, origin: str, **extra: str):
        return self.client.get(
            URL, {"email": "jane@university.example"}, HTTP_ORIGIN=origin, **extra
        )

    def test_the_uploader_origin_is_allowed_and_sees_the_etag(self) -> None:
        response = self.ask(ORIGIN, **key_header(self.raw))
        self.assertEqual(response.status_code, 200)
        self.assertEqual(response[ALLOW], ORIGIN)
        self.assertEqual(response["Access-Control-Expose-Headers"], "ETag")
        self.assertIn("origin", response["Vary"].lower())
        self.assertNotIn("access-control-allow-credentials", response.headers)

    def test_foreign_and_look_alike_origins_get_no_cors_headers(self) -> None:
        for origin in [
            "https://evil.example",
            "https://pacsbin.com.evil.example",
            "https://evil-pacsbin.com",
            "https://sub.pacsbin.com",
            "http://pacsbin.com",
            "https://pacsbin.com:8443",
            "null",
        ]:
            with self.subTest(origin=origin):
                response = self.ask(origin, **key_header(self.raw))
                self.assertEqual(response.status_code, 200)
                self.assertNotIn(ALLOW, response.headers)

    def test_the_preflight_allows_authorization_and_if_none_match(self) -> None:
        response = self.client.options(
            URL,
            HTTP_ORIGIN=ORIGIN,
            HTTP_ACCESS_CONTROL_REQUEST_METHOD="GET",
            HTTP_ACCESS_CONTROL_REQUEST_HEADERS="authorization, if-none-match",
        )
        self.assertEqual(response.status_code, 200)
        self.assertEqual(response[ALLOW], ORIGIN)
        allowed = {
            h.strip() for h in response["Access-Control-Allow-Headers"].split(",")
        }
        self.assertLessEqual({"authorization", "if-none-match"}, allowed)
        self.assertIn("GET", response["Access-Control-Allow-Methods"])

    def test_a_preflight_from_a_foreign_origin_is_not_allowed(self) -> None:
        response = self.client.options(
            URL,
            HTTP_ORIGIN="https://pacsbin.com.evil.example",
            HTTP_ACCESS_CONTROL_REQUEST_METHOD="GET",
            HTTP_ACCESS_CONTROL_REQUEST_HEADERS="authorization",
        )
        self.assertNotIn(ALLOW, response.headers)

    def test_error_answers_carry_cors_headers_too(self) -> None:
        # Otherwise the browser reports a 401 or 400 as a CORS failure.
        unauthenticated = self.ask(ORIGIN)
        self.assertEqual(unauthenticated.status_code, 401)
        self.assertEqual(unauthenticated[ALLOW], ORIGIN)
        bad_email = self.client.get(
            URL, {"email": "nope"}, HTTP_ORIGIN=ORIGIN, **key_header(self.raw)
        )
        self.assertEqual(bad_email.status_code, 400)
        self.assertEqual(bad_email[ALLOW], ORIGIN)

    def test_a_304_carries_cors_headers_and_the_etag(self) -> None:
        tag = self.ask(ORIGIN, **key_header(self.raw))["ETag"]
        response = self.ask(ORIGIN, HTTP_IF_NONE_MATCH=tag, **key_header(self.raw))
        self.assertEqual(response.status_code, 304)
        self.assertEqual(response[ALLOW], ORIGIN)
        self.assertEqual(response["Access-Control-Expose-Headers"], "ETag")

    @override_settings(ACCESS_THROTTLE_RATE=(1, 60))
    def test_a_throttled_answer_carries_cors_headers(self) -> None:
        fresh_throttle_cache(self)
        self.ask(ORIGIN, **key_header(self.raw))
        response = self.ask(ORIGIN, **key_header(self.raw))
        self.assertEqual(response.status_code, 429)
        self.assertEqual(response[ALLOW], ORIGIN)


class NoCorsElsewhereTests(TestCase):
    @classmethod
    def setUpTestData(cls) -> None:
        cls.key, cls.raw = api_key("admin-bot", "manage")

    def test_the_management_api_gets_no_cors_headers(self) -> None:
        for path in ["/api/v1/servers/", "/api/v1/institutions/", "/api/v1/health"]:
            with self.subTest(path=path):
                response = self.client.get(
                    path, HTTP_ORIGIN=ORIGIN, **key_header(self.raw)
                )
                self.assertEqual(response.status_code, 200)
                self.assertNotIn(ALLOW, response.headers)

    def test_a_preflight_to_the_management_api_is_not_allowed(self) -> None:
        response = self.client.options(
            "/api/v1/servers/",
            HTTP_ORIGIN=ORIGIN,
            HTTP_ACCESS_CONTROL_REQUEST_METHOD="POST",
            HTTP_ACCESS_CONTROL_REQUEST_HEADERS="authorization, content-type",
        )
        self.assertNotIn(ALLOW, response.headers)
        self.assertNotIn("access-control-allow-headers", response.headers)

    def test_the_admin_gets_no_cors_headers(self) -> None:
        self.client.force_login(User.objects.create_superuser("a", "a@x.example", "p"))
        response = self.client.get("/admin/", HTTP_ORIGIN=ORIGIN)
        self.assertEqual(response.status_code, 200)
        self.assertNotIn(ALLOW, response.headers)

    def test_the_schema_gets_no_cors_headers(self) -> None:
        response = self.client.get("/api/schema/", HTTP_ORIGIN=ORIGIN)
        self.assertNotIn(ALLOW, response.headers)
