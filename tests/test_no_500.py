"""Odd input never gets a 500: lone surrogates, NUL and control characters in
browser reports and in what an archive answers, JSON nested deeper than
Python parses, ids beyond 64 bits or written with non-ASCII digits. Each is
refused with a message naming the value (escaped), or neutralised before it
is stored, and nothing is half-written. Rows stored before still render."""

from __future__ import annotations

import io
import json
from functools import partial
from typing import Any
from unittest import mock, skipUnless

import urllib3
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.db import connection
from django.test import TestCase
from django.urls import reverse

from integrations import inputs, transfer
from integrations.connectivity import client, probe, runs
from integrations.models import (
    ApprovedUser,
    CheckOutcome,
    ConnectivityCheck,
    DicomWebServer,
    Institution,
    OnboardingRequest,
    check_pacsbin_proxy,
)
from tests.api_helpers import (
    key_header,
)
from tests.factories import (
    api_key,
    approve,
    make_institution,
    make_server,
    submitted_request,
)
from tests.onboarding_helpers import (
    FreshRateLimit,
    form_data,
)
from tests.test_onboarding_browser_check import record_url, status_url

DEEP = "[" * 20_000 + "]" * 20_000
HUGE = "99999999999999999999"
SUPERSCRIPT_TWO = "²"
ARABIC_ONE = "١"


def make_admin() -> Any:
    return get_user_model().objects.create_superuser(
        "admin", "admin@pacsbin.example", "a-long-test-password-1"
    )


def report(message: str, code: str = "browser_ok") -> str:
    # json.dumps writes a lone surrogate as the escape "\ud800", as a
    # browser's JSON.stringify does.
    return json.dumps(
        {"outcome": "ok", "findings": [{"code": code, "message": message}]}
    )


def messages_in(answer: Any) -> str:
    """Every string in a JSON answer, one per line."""
    if isinstance(answer, dict):
        return "\n".join(messages_in(value) for value in answer.values())
    if isinstance(answer, list):
        return "\n".join(messages_in(value) for value in answer)
    return str(answer)


class ParsingIds(TestCase):
    def test_only_ascii_digits_within_64_bits_are_ids(self) -> None:
        self.assertEqual(inputs.parse_id("42"), 42)
        self.assertEqual(inputs.parse_id(str(inputs.MAX_ID)), inputs.MAX_ID)
        for raw in [
            SUPERSCRIPT_TWO,
            ARABIC_ONE,
            HUGE,
            str(inputs.MAX_ID + 1),
            "-1",
            " 1",
            "1\n",
            "",
            None,
            True,
            1.0,
        ]:
            with self.subTest(raw=raw):
                self.assertIsNone(inputs.parse_id(raw))


class BrowserReportsOnTheStatusPage(FreshRateLimit, TestCase):
    @classmethod
    def setUpTestData(cls) -> None:
        cls.r = submitted_request()
        cls.admin = make_admin()

    def post(self, body: str) -> Any:
        return self.client.post(
            record_url(self.r),
            body,
            content_type="application/json",
            headers={"Origin": "https://registry.example"},
        )

    def assert_pages_still_render(self) -> None:
        self.assertEqual(self.client.get(status_url(self.r)).status_code, 200)
        self.client.force_login(self.admin)
        review = reverse(
            "admin:integrations_onboardingrequest_change", args=[self.r.pk]
        )
        self.assertEqual(self.client.get(review).status_code, 200)

    def test_a_lone_surrogate_is_400_naming_it_and_the_pages_still_render(
        self,
    ) -> None:
        response = self.post(report("blocked \ud800 here"))
        self.assertEqual(response.status_code, 400)
        detail = response.json()["detail"]
        self.assertIn("blocked \\ud800 here", detail)
        self.assertIn("U+D800", detail)
        self.assertFalse(ConnectivityCheck.objects.exists())
        self.assert_pages_still_render()

    def test_nul_and_control_characters_are_400_naming_them(self) -> None:
        for character in ["\x00", "\x1b", "\n", "\u202e"]:
            with self.subTest(character=repr(character)):
                response = self.post(report(f"it{character}worked"))
                self.assertEqual(response.status_code, 400)
                message = response.json()["findings"][0]
                self.assertIn(f"it\\u{ord(character):04x}worked", message)
                self.assertIn(inputs.codepoint(character), message)
        self.assertFalse(ConnectivityCheck.objects.exists())
        self.assert_pages_still_render()

    def test_a_code_with_a_trailing_newline_is_refused(self) -> None:
        response = self.post(report("Worked.", code="browser_ok\n"))
        self.assertEqual(response.status_code, 400)
        self.assertFalse(ConnectivityCheck.objects.exists())

    def test_deep_nesting_is_400_and_writes_nothing(self) -> None:
        for body in [DEEP, '{"findings": ' + DEEP + "}"]:
            response = self.post(body)
            self.assertEqual(response.status_code, 400)
            self.assertIn("nested too deeply", response.json()["detail"])
        self.assertFalse(ConnectivityCheck.objects.exists())

    def test_a_body_that_is_not_utf8_is_400(self) -> None:
        response = self.post(b'{"outcome": "\xff"}')  # type: ignore[arg-type]
        self.assertEqual(response.status_code, 400)
        self.assertFalse(ConnectivityCheck.objects.exists())


class BrowserReportsOnTheServerPage(TestCase):
    @classmethod
    def setUpTestData(cls) -> None:
        cls.server = make_server(make_institution())
        cls.admin = make_admin()

    def test_nul_and_surrogates_are_400_and_write_nothing(self) -> None:
        self.client.force_login(self.admin)
        url = reverse(
            "admin:integrations_dicomwebserver_browser_check", args=[self.server.pk]
        )
        for body, named in [
            (report("a\x00b"), "a\\u0000b"),
            (report("a\udfffb"), "a\\udfffb"),
            (DEEP, "nested too deeply"),
        ]:
            response = self.client.post(url, body, content_type="application/json")
            self.assertEqual(response.status_code, 400)
            self.assertIn(named, messages_in(response.json()))
        self.assertFalse(ConnectivityCheck.objects.exists())


class StoredOddFindings(TestCase):
    """Rows written before the checks existed, or by hand."""

    @classmethod
    def setUpTestData(cls) -> None:
        cls.r = submitted_request()
        cls.server = make_server(make_institution())
        cls.admin = make_admin()
        for target in ({"onboarding_request": cls.r}, {"server": cls.server}):
            ConnectivityCheck.objects.create(
                source="browser",
                origin="https://registry.example",
                outcome="cors_missing",
                findings=[{"code": "browser_blocked", "message": "Blocked."}],
                **target,
            )
        if connection.vendor == "sqlite":
            odd = "x\ud800y\x00z\u202e"
            shown = "x\\ud800y\\u0000z\\u202e"
        else:  # PostgreSQL's jsonb holds neither NUL nor lone surrogates
            odd = "x\x1by\u202ez"
            shown = "x\\u001by\\u202ez"
        ConnectivityCheck.objects.update(
            findings=[{"code": "odd", "message": odd}, "not a finding"]
        )
        cls.shown = shown

    def test_the_status_page_renders_them_escaped(self) -> None:
        response = self.client.get(status_url(self.r))
        self.assertEqual(response.status_code, 200)
        self.assertContains(response, self.shown)

    def test_the_review_page_renders_them_escaped(self) -> None:
        self.client.force_login(self.admin)
        response = self.client.get(
            reverse("admin:integrations_onboardingrequest_change", args=[self.r.pk])
        )
        self.assertEqual(response.status_code, 200)
        self.assertContains(response, self.shown)

    def test_the_server_page_and_the_api_render_them_escaped(self) -> None:
        self.client.force_login(self.admin)
        page = self.client.get(
            reverse("admin:integrations_dicomwebserver_change", args=[self.server.pk])
        )
        self.assertContains(page, self.shown)
        response = self.client.get(f"/api/v1/servers/{self.server.pk}/checks/")
        self.assertEqual(response.status_code, 200)
        self.assertIn(self.shown, messages_in(response.json()))


class ApiBodies(TestCase):
    @classmethod
    def setUpTestData(cls) -> None:
        _, cls.raw_key = api_key("manager", "manage")
        cls.server = make_server(make_institution())

    def post(self, url: str, body: str) -> Any:
        return self.client.post(
            url, body, content_type="application/json", **key_header(self.raw_key)
        )

    def test_deep_nesting_is_400_on_every_json_endpoint(self) -> None:
        urls = [
            "/api/v1/institutions/",
            "/api/v1/servers/",
            f"/api/v1/servers/{self.server.pk}/approved-users/",
        ]
        for url in urls:
            with self.subTest(url=url):
                response = self.post(url, DEEP)
                self.assertEqual(response.status_code, 400)
                self.assertIn("nested too deeply", response.json()["detail"])
        response = self.client.patch(
            f"/api/v1/servers/{self.server.pk}/",
            DEEP,
            content_type="application/json",
            **key_header(self.raw_key),
        )
        self.assertEqual(response.status_code, 400)
        self.assertEqual(Institution.objects.count(), 1)
        self.assertEqual(DicomWebServer.objects.count(), 1)

    def test_a_lone_surrogate_in_bulk_emails_is_400_naming_it(self) -> None:
        response = self.post(
            f"/api/v1/servers/{self.server.pk}/approved-users/",
            json.dumps({"emails": ["ok@example.edu", "\ud800@x.com"]}),
        )
        self.assertEqual(response.status_code, 400)
        self.assertIn("\\ud800@x.com", response.json()["detail"])
        self.assertFalse(ApprovedUser.objects.exists())

    def test_odd_ends_on_a_bulk_add_are_400_naming_them(self) -> None:
        url = f"/api/v1/servers/{self.server.pk}/approved-users/"
        for body, named in [
            ('{"emails": ["a@x.edu"], "expires_at": "\\ud800"}', "\\ud800"),
            ('{"emails": ["a@x.edu"], "expires_at": "2027-01-01\\u0000"}', "\\u0000"),
            ('{"emails": ["a@x.edu"], "days": ' + HUGE + "}", HUGE),
            ('{"emails": ["a@x.edu"], "days": 1e400}', "Infinity"),
            ('{"emails": ["a@x.edu"], "expires_at": {"a": [1]}}', '{"a": [1]}'),
        ]:
            with self.subTest(body=body):
                response = self.post(url, body)
                self.assertEqual(response.status_code, 400, response.content)
                body = response.json()
                messages = [body["detail"]] if "detail" in body else []
                messages += body.get("days", []) + body.get("expires_at", [])
                self.assertTrue(any(named in m for m in messages), messages)
        self.assertFalse(ApprovedUser.objects.exists())

    def test_a_lone_surrogate_in_a_key_is_400(self) -> None:
        response = self.post("/api/v1/institutions/", '{"name\\udc00": "A"}')
        self.assertEqual(response.status_code, 400)
        self.assertIn("\\udc00", response.json()["detail"])
        self.assertEqual(Institution.objects.count(), 1)

    def test_nan_is_not_json(self) -> None:
        response = self.post("/api/v1/institutions/", '{"name": NaN}')
        self.assertEqual(response.status_code, 400)


class IdsInTheApi(TestCase):
    @classmethod
    def setUpTestData(cls) -> None:
        _, cls.raw_key = api_key("manager", "manage")
        cls.institution = make_institution()
        cls.server = make_server(cls.institution)

    def get(self, url: str, **params: str) -> Any:
        return self.client.get(url, params, **key_header(self.raw_key))

    def test_the_server_filter_refuses_what_is_not_a_64_bit_id(self) -> None:
        for raw in [HUGE, SUPERSCRIPT_TWO, ARABIC_ONE, "-1"]:
            with self.subTest(raw=raw):
                response = self.get("/api/v1/servers/", institution=raw)
                self.assertEqual(response.status_code, 400)
                self.assertIn(f"“{raw}”", response.json()["institution"][0])
        ok = self.get("/api/v1/servers/", institution=str(self.institution.pk))
        self.assertEqual(ok.json()["count"], 1)

    def test_paths_with_odd_ids_are_404(self) -> None:
        for raw in [HUGE, "%C2%B2", "%D9%A1"]:
            for url in [
                f"/api/v1/servers/{raw}/",
                f"/api/v1/institutions/{raw}/",
                f"/api/v1/servers/{raw}/approved-users/",
                f"/api/v1/servers/{raw}/checks/",
            ]:
                with self.subTest(url=url):
                    self.assertEqual(self.get(url).status_code, 404)

    def test_a_server_for_an_odd_institution_id_is_400_and_not_written(self) -> None:
        for value in [ARABIC_ONE, SUPERSCRIPT_TWO, HUGE, int(HUGE)]:
            with self.subTest(value=value):
                response = self.client.post(
                    "/api/v1/servers/",
                    {
                        "institution": value,
                        "name": "Odd",
                        "qido_url": "https://odd.example.org/dicomweb",
                        "wado_url": "https://odd.example.org/dicomweb",
                    },
                    content_type="application/json",
                    **key_header(self.raw_key),
                )
                self.assertEqual(response.status_code, 400)
                self.assertIn(str(value), response.json()["institution"][0])
        self.assertEqual(DicomWebServer.objects.count(), 1)


class AdminChangelistFilters(TestCase):
    """Every admin list, with whole-number filters Python's int() reads
    wrongly or the database cannot hold: Django's "?e=1" page, never a 500."""

    ODD_FILTERS = [
        f"server__id__exact={SUPERSCRIPT_TWO}",
        f"server__id__exact={ARABIC_ONE}",
        f"server__id__exact={HUGE}",
        f"server={HUGE}",
        f"institution__id__exact={SUPERSCRIPT_TWO}",
        f"institution__id__exact={HUGE}",
        f"id__exact={SUPERSCRIPT_TWO}",
        f"id__exact={HUGE}",
        f"id__in=1,{HUGE}",
        f"pk={HUGE}",
        f"pk={ARABIC_ONE}",
        f"id__gt={HUGE}",
    ]

    @classmethod
    def setUpTestData(cls) -> None:
        cls.admin = make_admin()
        cls.server = make_server(make_institution())
        approve(cls.server, "jane@example.edu")
        submitted_request()

    def setUp(self) -> None:
        self.client.force_login(self.admin)

    def changelists(self) -> list[str]:
        return [
            reverse(f"admin:{m._meta.app_label}_{m._meta.model_name}_changelist")
            for m in admin.site._registry
        ]

    def test_no_list_answers_500(self) -> None:
        for url in self.changelists():
            for query in self.ODD_FILTERS:
                with self.subTest(url=url, query=query):
                    response = self.client.get(f"{url}?{query}")
                    self.assertIn(response.status_code, (200, 302, 400))
                    if response.status_code == 302:
                        self.assertTrue(response["Location"].endswith("?e=1"))

    def test_the_approved_users_server_filter_refuses_odd_ids(self) -> None:
        url = reverse("admin:integrations_approveduser_changelist")
        for raw in [SUPERSCRIPT_TWO, ARABIC_ONE, HUGE]:
            with self.subTest(raw=raw):
                response = self.client.get(url, {"server__id__exact": raw})
                self.assertRedirects(
                    response, f"{url}?e=1", fetch_redirect_response=False
                )
        response = self.client.get(url, {"server__id__exact": self.server.pk})
        self.assertContains(response, "jane@example.edu")

    def test_the_request_queue_refuses_a_server_id_beyond_64_bits(self) -> None:
        url = reverse("admin:integrations_onboardingrequest_changelist")
        response = self.client.get(url, {"server": HUGE})
        self.assertRedirects(response, f"{url}?e=1", fetch_redirect_response=False)

    def test_change_history_and_review_pages_of_odd_ids_are_not_found(self) -> None:
        for model in admin.site._registry:
            opts = model._meta
            for raw in [SUPERSCRIPT_TWO, ARABIC_ONE, HUGE]:
                for view in ["change", "history"]:
                    url = reverse(
                        f"admin:{opts.app_label}_{opts.model_name}_{view}",
                        args=[raw],
                    )
                    with self.subTest(url=url):
                        response = self.client.get(url)
                        self.assertIn(response.status_code, (302, 404))


def response(status: int, body: bytes = b"", **headers: str) -> client.Response:
    return client.Response(
        url="https://pacs.example.org/dicomweb/studies",
        status=status,
        headers=urllib3.HTTPHeaderDict(headers),
        body=body,
    )


def archive(search: client.Response) -> Any:
    """A fake fetch: preflight allowed for everyone, ``search`` for the rest."""

    def fetch(method: str, url: str, **kwargs: Any) -> client.Response:
        if method == "OPTIONS":
            return response(
                204,
                **{
                    "Access-Control-Allow-Origin": "*",
                    "Access-Control-Allow-Methods": "GET",
                    "Access-Control-Allow-Headers": "accept, authorization",
                },
            )
        return search

    return fetch


class WhatAnArchiveAnswers(TestCase):
    @classmethod
    def setUpTestData(cls) -> None:
        cls.server = make_server(make_institution())

    def run_check_against(self, fetch: Any) -> ConnectivityCheck:
        with mock.patch.object(probe, "probe", partial(probe.probe, fetch=fetch)):
            return runs.run_check(self.server)

    def test_deeply_nested_json_is_not_dicomweb_with_a_plain_message(self) -> None:
        search = response(
            200,
            b"[" * 100_000 + b"]" * 100_000,
            **{
                "Content-Type": "application/dicom+json",
                "Access-Control-Allow-Origin": "*",
            },
        )
        check = self.run_check_against(archive(search))
        self.assertEqual(check.outcome, CheckOutcome.NOT_DICOMWEB)
        found = {f["code"]: f["message"] for f in check.findings}
        self.assertIn("nested too deeply", found["qido_json_too_deep"])

    def test_nul_and_surrogates_in_its_headers_are_stored_escaped(self) -> None:
        search = response(
            200,
            b"[]",
            **{
                "Content-Type": "application/dicom+json",
                "Access-Control-Allow-Origin": "https://evil\x00\ud800\x1b.example",
            },
        )
        check = self.run_check_against(archive(search))
        check.refresh_from_db()
        self.assertEqual(check.outcome, CheckOutcome.CORS_ORIGIN_MISMATCH)
        message = next(
            f["message"]
            for f in check.findings
            if f["code"] == "qido_cors_origin_mismatch"
        )
        self.assertIn("https://evil\\u0000\\ud800\\u001b.example", message)
        self.assertIsNone(inputs.first_unsafe(message))

    def test_a_study_uid_that_is_not_a_uid_is_not_asked_for(self) -> None:
        body = json.dumps([{"0020000D": {"vr": "UI", "Value": ["1.2\ud800.3"]}}])
        search = response(
            200,
            body.encode(),
            **{
                "Content-Type": "application/dicom+json",
                "Access-Control-Allow-Origin": "*",
            },
        )
        check = self.run_check_against(archive(search))
        self.assertIn("wado_not_tested", [f["code"] for f in check.findings])

    def test_long_findings_are_capped(self) -> None:
        search = response(
            200,
            b"[]",
            **{
                "Content-Type": "application/dicom+json",
                "Access-Control-Allow-Origin": "https://" + "a" * 10_000 + ".example",
            },
        )
        check = self.run_check_against(archive(search))
        self.assertTrue(all(len(f["message"]) <= 4000 for f in check.findings))


@skipUnless(connection.vendor == "postgresql", "NUL in jsonb: PostgreSQL only")
class NulOnPostgreSQL(TestCase):
    def test_the_model_path_escapes_nul_before_postgresql_sees_it(self) -> None:
        server = make_server(make_institution())
        check = ConnectivityCheck.objects.record(
            server=server,
            source="server",
            origin="https://pacsbin.com",
            outcome="ok",
            findings=[{"code": "x", "message": "a\x00b"}],
        )
        check.refresh_from_db()
        self.assertEqual(check.findings, [{"code": "x", "message": "a\\u0000b"}])


class ImportingApprovedUsersFromCsv(TestCase):
    def test_odd_server_ids_are_named_and_nothing_is_written(self) -> None:
        server = make_server(make_institution())
        text = (
            f"server_id,email\n{server.pk},new@example.org\n"
            f"{HUGE},a@example.org\n{ARABIC_ONE},b@example.org\n"
        )
        with self.assertRaises(transfer.TransferError) as caught:
            transfer.import_csv(io.StringIO(text))
        message = str(caught.exception)
        self.assertIn(f"Line 3: “{HUGE}” is not a server id.", message)
        self.assertIn(f"Line 4: “{ARABIC_ONE}” is not a server id.", message)
        self.assertFalse(ApprovedUser.objects.exists())


# (A lone surrogate cannot travel in a form body: test_pacsbin_proxy sends
# one to the API as a JSON escape.)
ODD_PROXY_VALUES = [
    "\x00",
    HUGE,
    SUPERSCRIPT_TWO,
    "-1",
    "1e9",
    " ",
    "x" * 5000,
    "\u202e\u2028",
    "[::1%eth0]",
]


class PacsbinProxyInputs(FreshRateLimit, TestCase):
    """Every input of Pacsbin's proxy settings, on the admin's server page and
    the public form, with odd values: a page naming the problem, never a 500,
    nothing written."""

    FIELDS = [
        "archive_ae_title",
        "archive_host",
        "archive_port",
        "proxy_ae_title",
        "proxy_dimse_port",
    ]

    def test_the_admin_server_form(self) -> None:
        server = make_server(
            make_institution(),
            qido_url="https://proxy.example",
            cors_mode="dimse_proxy",
            pacsbin_proxy={
                "mode": "dimse",
                "archive_ae_title": "PACS",
                "archive_host": "10.0.0.1",
                "archive_port": 104,
                "proxy_ae_title": "PROXY",
                "proxy_dimse_port": 8888,
            },
        )
        self.client.force_login(make_admin())
        base = {
            "institution": server.institution_id,
            "name": server.name,
            "qido_url": server.qido_url,
            "wado_url": server.wado_url,
            "status": "active",
            "cors_mode": "dimse_proxy",
            "proxy_mode": "dimse",
            "archive_ae_title": "PACS",
            "archive_host": "10.0.0.1",
            "archive_port": "104",
            "proxy_ae_title": "PROXY",
            "proxy_dimse_port": "8888",
        }
        url = reverse("admin:integrations_dicomwebserver_change", args=[server.pk])
        for field in [*self.FIELDS, "forward_qido_url", "proxy_mode"]:
            for value in ODD_PROXY_VALUES:
                with self.subTest(field=field, value=value[:20]):
                    response = self.client.post(url, {**base, field: value})
                    # Refused with the page naming it (200), or a value the
                    # rule takes ("-1" is an AE title) saved (302).
                    self.assertIn(response.status_code, (200, 302))
                    server.refresh_from_db()
                    server.full_clean()  # whatever was saved passes the rule

    def test_the_public_form(self) -> None:
        base = form_data(
            archive_speaks="dimse",
            proxy_url="https://proxy.example",
            **dict.fromkeys(self.FIELDS, "1"),
        )
        for field in [*self.FIELDS, "proxy_url", "archive_speaks"]:
            for value in ODD_PROXY_VALUES:
                with self.subTest(field=field, value=value[:20]):
                    with self.settings(ONBOARDING_SUBMISSIONS_PER_HOUR=10_000):
                        response = self.client.post(
                            "/onboarding/", {**base, field: value}
                        )
                    self.assertIn(response.status_code, (302, 400))
        for r in OnboardingRequest.objects.all():  # what was taken passes
            check_pacsbin_proxy(r.cors_mode, r.qido_url, r.wado_url, r.pacsbin_proxy)
