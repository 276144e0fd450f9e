"""GET /api/v1/access: the question the uploader asks."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from unittest import mock

from django.test import TestCase, override_settings
from django.utils import timezone

from integrations import registry
from integrations.api import auth
from integrations.connectivity import capabilities
from integrations.models import ApiKey, DicomWebServer, Institution, ServerHealth
from tests.api_helpers import (
    bearer_header,
    key_header,
    user_token,
)
from tests.factories import (
    api_key,
    server,
)

URL = "/api/v1/access"
JANE = "jane.doe@university.example"


@contextmanager
def later(seconds: float) -> Iterator[None]:
    """The workers' clock (time.monotonic), ``seconds`` ahead."""
    now = time.monotonic()
    with mock.patch("integrations.api.auth.time.monotonic", return_value=now + seconds):
        yield


@override_settings(ACCESS_THROTTLE_RATE=None)
class AccessWithApiKeyTests(TestCase):
    @classmethod
    def setUpTestData(cls) -> None:
        cls.key, cls.raw = api_key("uploader", "access")
        zeta = Institution.objects.create(name="Zeta Clinic")
        alpha = Institution.objects.create(name="alpha Hospital")
        cls.zeta_pacs = server(zeta, "Zeta PACS", emails=[JANE])
        cls.alpha_vna = server(alpha, "VNA", emails=["Jane.Doe@University.example"])
        cls.alpha_archive = server(alpha, "archive", emails=[JANE])
        server(
            alpha, "Pending one", status=DicomWebServer.Status.PENDING, emails=[JANE]
        )
        server(
            alpha, "Suspended", status=DicomWebServer.Status.SUSPENDED, emails=[JANE]
        )
        server(alpha, "Someone else's", emails=["other@university.example"])

    def ask(self, email: str | None = JANE, **extra: str):
        params = {} if email is None else {"email": email}
        return self.client.get(URL, params, **key_header(self.raw), **extra)

    def test_it_lists_active_servers_ordered_by_institution_then_name(self) -> None:
        response = self.ask()
        self.assertEqual(response.status_code, 200)
        body = response.json()
        self.assertEqual(body["email"], JANE)
        self.assertEqual(
            [(s["institution"], s["name"]) for s in body["servers"]],
            [
                ("alpha Hospital", "archive"),
                ("alpha Hospital", "VNA"),
                ("Zeta Clinic", "Zeta PACS"),
            ],
        )
        self.assertEqual(
            body["servers"][0],
            {
                "id": self.alpha_archive.pk,
                "name": "archive",
                "institution": "alpha Hospital",
                "qido_url": "https://archive.example/dicomweb",
                "wado_url": "https://archive.example/wado",
            },
        )

    def test_it_ignores_case_and_surrounding_whitespace(self) -> None:
        response = self.ask("  JANE.DOE@University.EXAMPLE \t")
        self.assertEqual(response.status_code, 200)
        self.assertEqual(len(response.json()["servers"]), 3)

    def test_it_answers_the_normalised_email(self) -> None:
        response = self.ask(" jane.doe@UNIVERSITY.EXAMPLE ")
        # email-validator lower-cases the domain and keeps the local part.
        self.assertEqual(response.json()["email"], "jane.doe@university.example")

    def test_an_email_with_no_approval_gets_an_empty_list(self) -> None:
        response = self.ask("nobody@university.example")
        self.assertEqual(response.status_code, 200)
        self.assertEqual(
            response.json(), {"email": "nobody@university.example", "servers": []}
        )

    def test_a_missing_email_is_a_400_naming_the_parameter(self) -> None:
        response = self.ask(None)
        self.assertEqual(response.status_code, 400)
        self.assertIn("email", response.json())

    def test_a_malformed_email_is_a_400_naming_the_value(self) -> None:
        response = self.ask("jane@")
        self.assertEqual(response.status_code, 400)
        self.assertEqual(list(response.json()), ["email"])
        self.assertIn("jane@", response.json()["email"][0])

    def test_an_unknown_format_is_a_400_naming_it(self) -> None:
        response = self.client.get(
            URL, {"email": JANE, "format": "xml"}, **key_header(self.raw)
        )
        self.assertEqual(response.status_code, 400)
        self.assertIn("xml", response.json()["format"][0])

    def test_a_manage_key_may_ask_too(self) -> None:
        _key, raw = api_key("admin-bot", "manage")
        response = self.client.get(URL, {"email": JANE}, **key_header(raw))
        self.assertEqual(response.status_code, 200)

    def test_a_suspended_server_disappears_from_the_answer(self) -> None:
        DicomWebServer.objects.filter(pk=self.zeta_pacs.pk).update(status="suspended")
        names = [s["name"] for s in self.ask().json()["servers"]]
        self.assertEqual(names, ["archive", "VNA"])

    def test_the_answer_is_private_and_revalidated_every_time(self) -> None:
        response = self.ask()
        self.assertEqual(response["Cache-Control"], "private, no-cache")

    def test_head_answers_like_get_and_other_methods_are_a_405(self) -> None:
        head = self.client.head(URL, {"email": JANE}, **key_header(self.raw))
        self.assertEqual(head.status_code, 200)
        self.assertEqual(head["ETag"], self.ask()["ETag"])
        response = self.client.post(
            f"{URL}?email={JANE}", {}, content_type="application/json"
        )
        self.assertEqual(response.status_code, 401)  # credentials come first
        response = self.client.post(f"{URL}?email={JANE}", {}, **key_header(self.raw))
        self.assertEqual(response.status_code, 405)
        self.assertEqual(response.json(), {"detail": 'Method "POST" not allowed.'})
        self.assertEqual(response["Allow"], "GET, HEAD")


@override_settings(ACCESS_THROTTLE_RATE=None)
class AccessAuthenticationTests(TestCase):
    @classmethod
    def setUpTestData(cls) -> None:
        cls.key, cls.raw = api_key("uploader", "access")

    def test_no_credentials_is_a_401_with_a_challenge(self) -> None:
        response = self.client.get(URL, {"email": JANE})
        self.assertEqual(response.status_code, 401)
        self.assertEqual(response["WWW-Authenticate"], "Api-Key")

    def test_a_wrong_key_is_a_401(self) -> None:
        prefix = self.key.prefix
        for raw in [f"{prefix}.wrong", "nonsense", "", "a.b", self.raw + "x"]:
            with self.subTest(raw=raw):
                response = self.client.get(
                    URL, {"email": JANE}, HTTP_AUTHORIZATION=f"Api-Key {raw}"
                )
                self.assertEqual(response.status_code, 401)

    def test_a_revoked_key_is_a_401(self) -> None:
        self.key.revoke()
        response = self.client.get(URL, {"email": JANE}, **key_header(self.raw))
        self.assertEqual(response.status_code, 401)
        self.assertEqual(
            response.json(), {"detail": "Invalid, revoked or expired key."}
        )

    def test_an_expired_key_is_a_401(self) -> None:
        _key, raw = api_key(
            "old", "access", expires_at=timezone.now() - timedelta(seconds=1)
        )
        response = self.client.get(URL, {"email": JANE}, **key_header(raw))
        self.assertEqual(response.status_code, 401)

    def test_a_key_not_yet_expired_works(self) -> None:
        _key, raw = api_key(
            "new", "access", expires_at=timezone.now() + timedelta(days=1)
        )
        response = self.client.get(URL, {"email": JANE}, **key_header(raw))
        self.assertEqual(response.status_code, 200)

    def test_the_scheme_name_ignores_case(self) -> None:
        response = self.client.get(
            URL, {"email": JANE}, HTTP_AUTHORIZATION=f"api-key {self.raw}"
        )
        self.assertEqual(response.status_code, 200)

    def test_a_logged_in_staff_user_may_ask(self) -> None:
        from django.contrib.auth.models import Permission, User

        staff = User.objects.create_user("staff", password="x", is_staff=True)
        staff.user_permissions.add(Permission.objects.get(codename="view_approveduser"))
        self.client.force_login(staff)
        self.assertEqual(self.client.get(URL, {"email": JANE}).status_code, 200)

    def test_a_staff_user_without_the_approved_user_view_permission_may_not(
        self,
    ) -> None:
        from django.contrib.auth.models import User

        staff = User.objects.create_user("staff", password="x", is_staff=True)
        self.client.force_login(staff)
        response = self.client.get(URL, {"email": JANE})
        self.assertEqual(response.status_code, 403)
        self.assertEqual(
            response.json(),
            {"detail": "This credential may not ask the access question."},
        )

    def test_a_logged_in_non_staff_user_may_not(self) -> None:
        from django.contrib.auth.models import User

        self.client.force_login(User.objects.create_user("someone", password="x"))
        self.assertEqual(self.client.get(URL, {"email": JANE}).status_code, 403)

    def test_using_a_key_records_when_it_was_last_used(self) -> None:
        self.assertIsNone(self.key.last_used_at)
        self.client.get(URL, {"email": JANE}, **key_header(self.raw))
        self.key.refresh_from_db()
        self.assertIsNotNone(self.key.last_used_at)

    def test_last_used_is_written_at_most_once_a_minute(self) -> None:
        recent = timezone.now() - timedelta(seconds=30)
        ApiKey.objects.filter(pk=self.key.pk).update(last_used_at=recent)
        self.client.get(URL, {"email": JANE}, **key_header(self.raw))
        self.key.refresh_from_db()
        self.assertEqual(self.key.last_used_at, recent)

        stale = timezone.now() - timedelta(seconds=61)
        ApiKey.objects.filter(pk=self.key.pk).update(last_used_at=stale)
        with later(auth.KEY_CACHE_SECONDS):  # the worker looks the key up again
            self.client.get(URL, {"email": JANE}, **key_header(self.raw))
        self.key.refresh_from_db()
        self.assertGreater(self.key.last_used_at, stale)


@override_settings(ACCESS_THROTTLE_RATE=None)
class AccessETagTests(TestCase):
    @classmethod
    def setUpTestData(cls) -> None:
        cls.key, cls.raw = api_key("uploader", "access")
        cls.institution = Institution.objects.create(name="University Hospital")
        cls.pacs = server(cls.institution, "PACS", emails=[JANE])

    def ask(self, **headers: str):
        return self.client.get(URL, {"email": JANE}, **key_header(self.raw), **headers)

    def test_an_answer_carries_a_strong_etag(self) -> None:
        tag = self.ask()["ETag"]
        self.assertRegex(tag, r'^"[0-9a-f]{40}"$')
        self.assertEqual(self.ask()["ETag"], tag)

    def test_the_current_tag_gives_a_304_with_no_body(self) -> None:
        tag = self.ask()["ETag"]
        response = self.ask(HTTP_IF_NONE_MATCH=tag)
        self.assertEqual(response.status_code, 304)
        self.assertEqual(response.content, b"")
        self.assertEqual(response["ETag"], tag)
        self.assertEqual(response["Cache-Control"], "private, no-cache")

    def test_a_list_of_tags_containing_the_current_one_gives_a_304(self) -> None:
        tag = self.ask()["ETag"]
        response = self.ask(HTTP_IF_NONE_MATCH=f'"stale", {tag}, "other"')
        self.assertEqual(response.status_code, 304)

    def test_a_star_gives_a_304(self) -> None:
        self.assertEqual(self.ask(HTTP_IF_NONE_MATCH="*").status_code, 304)

    def test_a_weakened_tag_still_matches(self) -> None:
        # What a compressing proxy sends back (RFC 9110: weak comparison).
        tag = self.ask()["ETag"]
        self.assertEqual(self.ask(HTTP_IF_NONE_MATCH=f"W/{tag}").status_code, 304)

    def test_an_old_or_garbled_tag_gives_the_full_answer(self) -> None:
        for header in ['"stale"', "garbage", '""', ""]:
            with self.subTest(header=header):
                response = self.ask(HTTP_IF_NONE_MATCH=header)
                self.assertEqual(response.status_code, 200)
                self.assertEqual(len(response.json()["servers"]), 1)

    def test_a_change_to_the_registry_changes_the_tag(self) -> None:
        tag = self.ask()["ETag"]
        self.pacs.qido_url = "https://moved.example/dicomweb"
        self.pacs.save()
        response = self.ask(HTTP_IF_NONE_MATCH=tag)
        self.assertEqual(response.status_code, 200)
        self.assertNotEqual(response["ETag"], tag)
        self.assertEqual(
            response.json()["servers"][0]["qido_url"], "https://moved.example/dicomweb"
        )

    def test_a_new_approval_changes_the_tag(self) -> None:
        tag = self.ask()["ETag"]
        server(self.institution, "Second", emails=[JANE])
        response = self.ask(HTTP_IF_NONE_MATCH=tag)
        self.assertEqual(response.status_code, 200)
        self.assertEqual(len(response.json()["servers"]), 2)

    def test_the_ohif_answer_has_its_own_tag(self) -> None:
        plain = self.ask()["ETag"]
        ohif = self.client.get(
            URL, {"email": JANE, "format": "ohif"}, **key_header(self.raw)
        )
        self.assertNotEqual(ohif["ETag"], plain)


@override_settings(ACCESS_THROTTLE_RATE=None)
class AccessOhifFormatTests(TestCase):
    @classmethod
    def setUpTestData(cls) -> None:
        cls.key, cls.raw = api_key("viewer", "access")
        institution = Institution.objects.create(name="University Hospital")
        cls.pacs = server(institution, "PACS", emails=[JANE])

    def test_format_ohif_gives_ohif_v3_data_sources(self) -> None:
        response = self.client.get(
            URL, {"email": JANE, "format": "ohif"}, **key_header(self.raw)
        )
        self.assertEqual(response.status_code, 200)
        body = response.json()
        source = f"pacsbin-{self.pacs.pk}"
        self.assertEqual(body["email"], JANE)
        self.assertEqual(body["defaultDataSourceName"], source)
        [entry] = body["dataSources"]
        self.assertEqual(
            entry["namespace"], "@ohif/extension-default.dataSourcesModule.dicomweb"
        )
        self.assertEqual(entry["sourceName"], source)
        config = entry["configuration"]
        self.assertEqual(config["friendlyName"], "University Hospital — PACS")
        self.assertEqual(config["qidoRoot"], "https://pacs.example/dicomweb")
        self.assertEqual(config["wadoRoot"], "https://pacs.example/wado")
        self.assertEqual(config["imageRendering"], "wadors")

    def test_format_ohif_with_no_approval_has_no_default_source(self) -> None:
        response = self.client.get(
            URL, {"email": "x@y.example", "format": "ohif"}, **key_header(self.raw)
        )
        self.assertEqual(
            response.json(),
            {"email": "x@y.example", "defaultDataSourceName": None, "dataSources": []},
        )

    def test_format_json_is_the_plain_answer(self) -> None:
        response = self.client.get(
            URL, {"email": JANE, "format": "json"}, **key_header(self.raw)
        )
        self.assertEqual(list(response.json()), ["email", "servers"])


@override_settings(ACCESS_THROTTLE_RATE=None)
class AccessQueryCountTests(TestCase):
    """The answer costs the same SQL queries whatever the number of servers."""

    @classmethod
    def setUpTestData(cls) -> None:
        cls.key, cls.raw = api_key("uploader", "access")
        cls.institution = Institution.objects.create(name="University Hospital")
        server(cls.institution, "Server 0", emails=[JANE])

    def assert_queries(self, expected: int, servers: int, **auth: str) -> None:
        self.assertEqual(
            DicomWebServer.objects.filter(approved_users__email_key=JANE).count(),
            servers,
        )
        with self.assertNumQueries(expected):
            response = self.client.get(URL, {"email": JANE}, **auth)
        self.assertEqual(len(response.json()["servers"]), servers)

    def add_servers(self, count: int) -> None:
        for number in range(1, count + 1):
            server(self.institution, f"Server {number}", emails=[JANE])

    def test_an_api_key_answer_costs_one_query_at_1_and_at_50_servers(self) -> None:
        # The first call looks the key up (last_used_at is fresh: no write);
        # then the worker remembers it and an answer is the access query alone.
        ApiKey.objects.filter(pk=self.key.pk).update(last_used_at=timezone.now())
        self.assert_queries(2, 1, **key_header(self.raw))
        self.assert_queries(1, 1, **key_header(self.raw))
        self.add_servers(49)
        self.assert_queries(1, 50, **key_header(self.raw))

    def test_an_ohif_answer_costs_one_query_at_1_and_at_50_servers(self) -> None:
        # The learnt capabilities come in the same query (a join), with or
        # without a ServerHealth row.
        ApiKey.objects.filter(pk=self.key.pk).update(last_used_at=timezone.now())
        auth = key_header(self.raw)
        self.client.get(URL, {"email": JANE}, **auth)  # the key is remembered
        self.add_servers(49)
        for number, row in enumerate(DicomWebServer.objects.all()):
            if number % 2:
                ServerHealth.objects.create(
                    server=row, capabilities={capabilities.WILDCARD: False}
                )
        with self.assertNumQueries(1):
            response = self.client.get(URL, {"email": JANE, "format": "ohif"}, **auth)
        sources = response.json()["dataSources"]
        self.assertEqual(len(sources), 50)
        self.assertEqual(
            sum(not s["configuration"]["supportsWildcard"] for s in sources), 25
        )

    def test_the_once_a_minute_last_used_write_is_one_more_query(self) -> None:
        self.assert_queries(3, 1, **key_header(self.raw))

    @override_settings(
        UPLOADER_JWT_SECRET="test-uploader-secret-0123456789abcdef0123456789"
    )
    def test_a_bearer_answer_costs_one_query_at_1_and_at_50_servers(self) -> None:
        auth = bearer_header(user_token(JANE))
        with self.assertNumQueries(1):
            response = self.client.get(URL, **auth)
        self.assertEqual(len(response.json()["servers"]), 1)
        self.add_servers(49)
        with self.assertNumQueries(1):
            response = self.client.get(URL, **auth)
        self.assertEqual(len(response.json()["servers"]), 50)


@override_settings(ACCESS_THROTTLE_RATE=None)
class RememberedKeyTests(TestCase):
    """A worker remembers a key for KEY_CACHE_SECONDS (one query per answer),
    but never longer: a key revoked elsewhere is refused within that time."""

    @classmethod
    def setUpTestData(cls) -> None:
        cls.key, cls.raw = api_key("uploader", "access")

    def ask(self):
        return self.client.get(URL, {"email": JANE}, **key_header(self.raw))

    def test_a_key_revoked_in_the_database_is_refused_within_5_seconds(self) -> None:
        self.assertLessEqual(auth.KEY_CACHE_SECONDS, 5)
        self.assertEqual(self.ask().status_code, 200)
        # As another worker (or the admin on another machine) revokes it:
        ApiKey.objects.filter(pk=self.key.pk).update(revoked_at=timezone.now())
        with later(auth.KEY_CACHE_SECONDS):
            response = self.ask()
        self.assertEqual(response.status_code, 401)
        self.assertEqual(
            response.json(), {"detail": "Invalid, revoked or expired key."}
        )

    def test_a_key_deleted_from_the_database_is_refused_within_5_seconds(self) -> None:
        self.assertEqual(self.ask().status_code, 200)
        ApiKey.objects.filter(pk=self.key.pk).delete()
        with later(auth.KEY_CACHE_SECONDS):
            self.assertEqual(self.ask().status_code, 401)

    def test_a_remembered_key_that_expires_is_refused_at_once(self) -> None:
        soon = timezone.now() + timedelta(seconds=2)
        ApiKey.objects.filter(pk=self.key.pk).update(expires_at=soon)
        self.assertEqual(self.ask().status_code, 200)
        with mock.patch(
            "integrations.models.keys.timezone.now",
            return_value=soon + timedelta(seconds=1),
        ):
            self.assertEqual(self.ask().status_code, 401)

    def test_within_its_time_a_remembered_key_costs_no_query(self) -> None:
        self.ask()
        with self.assertNumQueries(1):  # the access query only
            self.assertEqual(self.ask().status_code, 200)
        with later(auth.KEY_CACHE_SECONDS), self.assertNumQueries(2):
            self.assertEqual(self.ask().status_code, 200)

    def test_an_unknown_key_is_looked_up_every_time(self) -> None:
        wrong = f"{self.key.prefix}.wrong"
        for _ in range(2):
            with self.assertNumQueries(1):
                response = self.client.get(
                    URL, {"email": JANE}, HTTP_AUTHORIZATION=f"Api-Key {wrong}"
                )
            self.assertEqual(response.status_code, 401)


@override_settings(ACCESS_THROTTLE_RATE=None)
class AnswersStayExactTests(TestCase):
    """With the key remembered, every change is still in the very next answer."""

    @classmethod
    def setUpTestData(cls) -> None:
        cls.key, cls.raw = api_key("uploader", "access")
        cls.institution = Institution.objects.create(name="University Hospital")
        cls.pacs = server(cls.institution, "PACS", emails=[JANE])

    def names(self) -> list[str]:
        with self.assertNumQueries(1):
            response = self.client.get(URL, {"email": JANE}, **key_header(self.raw))
        return [s["name"] for s in response.json()["servers"]]

    def setUp(self) -> None:
        self.client.get(URL, {"email": JANE}, **key_header(self.raw))

    def test_an_added_approval_is_seen_by_the_next_request(self) -> None:
        self.assertEqual(self.names(), ["PACS"])
        server(self.institution, "VNA", emails=[JANE])
        self.assertEqual(self.names(), ["PACS", "VNA"])

    def test_a_removed_approval_is_seen_by_the_next_request(self) -> None:
        registry.remove_approved_users(self.pacs, [JANE])
        self.assertEqual(self.names(), [])

    def test_a_status_change_is_seen_by_the_next_request(self) -> None:
        registry.set_status(
            DicomWebServer.objects.filter(pk=self.pacs.pk),
            DicomWebServer.Status.SUSPENDED,
        )
        self.assertEqual(self.names(), [])
        registry.set_status(
            DicomWebServer.objects.filter(pk=self.pacs.pk),
            DicomWebServer.Status.ACTIVE,
        )
        self.assertEqual(self.names(), ["PACS"])

    def test_a_new_url_is_seen_by_the_next_request(self) -> None:
        self.pacs.wado_url = "https://moved.example/wado"
        self.pacs.save()
        response = self.client.get(URL, {"email": JANE}, **key_header(self.raw))
        self.assertEqual(
            response.json()["servers"][0]["wado_url"], "https://moved.example/wado"
        )
