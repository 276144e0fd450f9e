"""The browser-side check and the fix-it configurations on the contact's status
page: the record endpoint and its guards, the page's CSP, the configurations,
the checks shown to the contact and to staff, and approval attaching them."""

from __future__ import annotations

import html
import json
from datetime import timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction
from django.test import Client, TestCase, override_settings
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from integrations.connectivity import proxyconfig
from integrations.connectivity import runs as connectivity_runs
from integrations.connectivity.reports import MAX_BROWSER_REPORT_BYTES
from integrations.models import (
    ConnectivityCheck,
    DicomWebServer,
    Institution,
    OnboardingRequest,
)
from integrations.onboarding import ReviewError, abuse, approve_request
from integrations.onboarding.links import status_link
from tests.factories import (
    submitted_request,
    update_request_for,
)
from tests.onboarding_helpers import (
    FreshRateLimit,
)

GOOD_REPORT = {
    "outcome": "ok",
    "findings": [{"code": "browser_ok", "message": "It worked (1 study)."}],
}
BLOCKED_REPORT = {
    "outcome": "cors_missing",
    "findings": [{"code": "browser_cors_blocked", "message": "Blocked by CORS."}],
}


def status_url(r: OnboardingRequest) -> str:
    return f"/onboarding/status/{status_link(r)}/"


def record_url(r: OnboardingRequest, link: str | None = None) -> str:
    return f"/onboarding/status/{link or status_link(r)}/browser-check"


def make_reviewer() -> Any:
    return get_user_model().objects.create_superuser(
        "reviewer", "reviewer@pacsbin.example", "a-long-test-password-1"
    )


class RecordingACheckFromTheStatusPage(FreshRateLimit, TestCase):
    @classmethod
    def setUpTestData(cls) -> None:
        cls.r = submitted_request()

    def post(self, body: Any, r: OnboardingRequest | None = None, **extra: Any) -> Any:
        return self.client.post(
            record_url(r or self.r),
            body if isinstance(body, str | bytes) else json.dumps(body),
            content_type="application/json",
            headers={"Origin": "https://registry.example"},
            **extra,
        )

    def test_a_good_report_is_recorded_for_the_request_with_the_origin_it_came_from(
        self,
    ) -> None:
        response = self.post(GOOD_REPORT)
        self.assertEqual(response.status_code, 201)
        check = ConnectivityCheck.objects.get()
        self.assertEqual(response.json(), check.to_dict())
        self.assertEqual(
            set(response.json()),
            {"id", "created_at", "source", "origin", "outcome", "findings"},
        )
        self.assertEqual(check.onboarding_request, self.r)
        self.assertIsNone(check.server)  # not approved: no server yet
        self.assertIsNone(check.created_by)
        self.assertEqual(
            (check.source, check.origin, check.outcome),
            ("browser", "https://registry.example", "ok"),
        )
        self.assertEqual(check.findings, GOOD_REPORT["findings"])

    def test_without_an_origin_header_the_origin_is_the_pages_scheme_and_host(
        self,
    ) -> None:
        response = self.client.post(
            record_url(self.r), json.dumps(GOOD_REPORT), content_type="application/json"
        )
        self.assertEqual(response.status_code, 201)
        self.assertEqual(ConnectivityCheck.objects.get().origin, "http://testserver")

    def test_a_report_from_an_approved_requests_page_also_belongs_to_its_server(
        self,
    ) -> None:
        approved = submitted_request(institution_name="Approved Hospital")
        server = approve_request(approved, make_reviewer()).server
        response = self.post(BLOCKED_REPORT, r=approved)
        self.assertEqual(response.status_code, 201)
        check = ConnectivityCheck.objects.get()
        self.assertEqual((check.server, check.onboarding_request), (server, approved))
        self.assertEqual(list(server.connectivity_checks.all()), [check])

    def test_a_pending_update_records_for_the_request_only_not_the_live_server(
        self,
    ) -> None:
        approved = submitted_request(institution_name="Approved Hospital")
        server = approve_request(approved, make_reviewer()).server
        update = update_request_for(server, qido_url="https://new.example.org/dicomweb")
        self.assertEqual(self.post(GOOD_REPORT, r=update).status_code, 201)
        check = ConnectivityCheck.objects.get()
        self.assertEqual(check.onboarding_request, update)
        self.assertIsNone(check.server)

    def test_a_tampered_or_unknown_link_is_404_and_writes_nothing(self) -> None:
        token, signature = status_link(self.r).rsplit(":", 1)
        for bad in (f"{token}:{signature[:-1]}x", token, "nonsense"):
            response = self.client.post(
                record_url(self.r, bad),
                json.dumps(GOOD_REPORT),
                content_type="application/json",
            )
            self.assertEqual(response.status_code, 404, bad)
        self.assertFalse(ConnectivityCheck.objects.exists())

    def test_a_bad_outcome_is_400_naming_it_and_writes_nothing(self) -> None:
        for outcome in ("perfect", "blocked"):  # "blocked" is the registry's own
            response = self.post({"outcome": outcome, "findings": []})
            self.assertEqual(response.status_code, 400)
            self.assertIn(f"“{outcome}”", response.json()["outcome"][0])
        self.assertFalse(ConnectivityCheck.objects.exists())

    def test_bad_findings_are_400_naming_the_finding_and_write_nothing(self) -> None:
        response = self.post(
            {"outcome": "ok", "findings": [{"code": "Bad Code!", "message": "x"}]}
        )
        self.assertEqual(response.status_code, 400)
        self.assertIn("Bad Code!", response.json()["findings"][0])
        self.assertFalse(ConnectivityCheck.objects.exists())

    def test_a_body_that_is_not_a_json_object_is_400_saying_what_it_is(self) -> None:
        response = self.post("not json")
        self.assertEqual(response.status_code, 400)
        self.assertIn("not JSON", response.json()["detail"])
        response = self.post([1, 2])
        self.assertEqual(response.status_code, 400)
        self.assertIn("JSON list", response.json()["detail"])
        self.assertFalse(ConnectivityCheck.objects.exists())

    def test_an_oversize_report_is_refused_and_writes_nothing(self) -> None:
        padding = "x" * MAX_BROWSER_REPORT_BYTES
        response = self.post({**GOOD_REPORT, "padding": padding})
        self.assertEqual(response.status_code, 413)
        self.assertIn(
            f"at most {MAX_BROWSER_REPORT_BYTES:,}", response.json()["detail"]
        )
        # Beyond the public pages' own cap, the middleware refuses it unread.
        response = self.post(b"x" * (abuse.MAX_BODY_BYTES + 1))
        self.assertEqual(response.status_code, 413)
        self.assertFalse(ConnectivityCheck.objects.exists())

    def test_a_client_gets_429_after_its_hourly_reports_and_others_do_not(
        self,
    ) -> None:
        # Reports with bad links count too: the limit comes before the link.
        for _ in range(abuse.BROWSER_CHECKS_PER_HOUR - 1):
            response = self.client.post(
                record_url(self.r, "nonsense"), "{}", content_type="application/json"
            )
            self.assertEqual(response.status_code, 404)
        self.assertEqual(self.post(GOOD_REPORT).status_code, 201)
        response = self.post(GOOD_REPORT)
        self.assertEqual(response.status_code, 429)
        self.assertIn("Too many checks", response.json()["detail"])
        self.assertEqual(ConnectivityCheck.objects.count(), 1)
        other = self.post(GOOD_REPORT, REMOTE_ADDR="198.51.100.7")
        self.assertEqual(other.status_code, 201)

    def test_submissions_and_checks_are_counted_apart(self) -> None:
        for _ in range(abuse.BROWSER_CHECKS_PER_HOUR):
            self.post(GOOD_REPORT)
        form = self.client.post("/onboarding/", {"leave_blank": "x"})
        self.assertNotEqual(form.status_code, 429)

    def test_only_post_is_accepted(self) -> None:
        self.assertEqual(self.client.get(record_url(self.r)).status_code, 405)

    def test_csrf_is_enforced_and_the_pages_token_is_accepted(self) -> None:
        strict = Client(enforce_csrf_checks=True)
        refused = strict.post(
            record_url(self.r), json.dumps(GOOD_REPORT), content_type="application/json"
        )
        self.assertEqual(refused.status_code, 403)
        self.assertFalse(ConnectivityCheck.objects.exists())
        page = strict.get(status_url(self.r))
        token = page.context["csrf_token"]
        self.assertContains(page, f'name="csrfmiddlewaretoken" value="{token}"')
        accepted = strict.post(
            record_url(self.r),
            json.dumps(GOOD_REPORT),
            content_type="application/json",
            headers={"X-CSRFToken": str(token)},
        )
        self.assertEqual(accepted.status_code, 201)
        self.assertEqual(ConnectivityCheck.objects.count(), 1)


class ChecksForNothing(TestCase):
    def test_the_database_refuses_a_check_with_neither_server_nor_request(
        self,
    ) -> None:
        with self.assertRaises(IntegrityError), transaction.atomic():
            ConnectivityCheck.objects.create(
                source="browser", origin="https://a.example", outcome="ok"
            )

    def test_the_flow_refuses_to_record_a_check_for_nothing(self) -> None:
        with self.assertRaises(ValueError):
            connectivity_runs.record_browser_check(None, "https://a.example", "ok", [])
        with self.assertRaises(ValidationError):  # malformed: refused, unwritten
            connectivity_runs.record_browser_check(
                None,
                "nonsense",
                "ok",
                [],
                onboarding_request=submitted_request(),
            )
        self.assertFalse(ConnectivityCheck.objects.exists())


class ApprovalAttachesTheChecks(TestCase):
    @classmethod
    def setUpTestData(cls) -> None:
        cls.reviewer = make_reviewer()

    def record(self, r: OnboardingRequest, report: dict[str, Any]) -> Any:
        return connectivity_runs.record_browser_check(
            None,
            "https://registry.example",
            report["outcome"],
            report["findings"],
            onboarding_request=r,
        )

    def test_approving_a_new_request_gives_its_checks_to_the_server_it_creates(
        self,
    ) -> None:
        r = submitted_request()
        checks = [self.record(r, BLOCKED_REPORT), self.record(r, GOOD_REPORT)]
        other = self.record(submitted_request(institution_name="Other"), GOOD_REPORT)
        server = approve_request(r, self.reviewer).server
        self.assertEqual(
            set(server.connectivity_checks.all()), set(checks)
        )  # and not the other request's
        other.refresh_from_db()
        self.assertIsNone(other.server)
        # The server's history in the API shows them, in the contract's shape.
        self.assertEqual(
            [
                c["outcome"]
                for c in (c.to_dict() for c in server.connectivity_checks.all())
            ],
            ["ok", "cors_missing"],
        )

    def test_approving_an_update_gives_its_checks_to_the_server_it_changes(
        self,
    ) -> None:
        server = approve_request(submitted_request(), self.reviewer).server
        update = update_request_for(server, qido_url="https://new.example.org/dicomweb")
        check = self.record(update, GOOD_REPORT)
        approve_request(update, self.reviewer)
        check.refresh_from_db()
        self.assertEqual(check.server, server)

    def test_a_refused_approval_leaves_the_checks_with_the_request_only(self) -> None:
        r = submitted_request()
        check = self.record(r, GOOD_REPORT)
        institution = Institution.objects.create(name=r.institution_name)
        DicomWebServer.objects.create(
            institution=institution,
            name=r.server_name,
            qido_url="https://elsewhere.example/dicomweb",
            wado_url="https://elsewhere.example/dicomweb",
        )
        with self.assertRaises(ReviewError):
            approve_request(r, self.reviewer)
        check.refresh_from_db()
        self.assertIsNone(check.server)
        self.assertEqual(check.onboarding_request, r)


@override_settings(
    UPLOADER_ORIGINS=["https://pacsbin.com"],
    REGISTRY_PUBLIC_ORIGIN="https://registry.pacsbin.example",
)
class TheStatusPage(TestCase):
    @classmethod
    def setUpTestData(cls) -> None:
        cls.r = submitted_request(
            qido_url="http://10.1.2.3:8042/dicom-web",
            wado_url="http://10.1.2.3:8042/dicom-web",
            needs_credentials=True,
        )

    def page(self, r: OnboardingRequest | None = None) -> Any:
        response = self.client.get(status_url(r or self.r))
        self.assertEqual(response.status_code, 200)
        return response

    def test_its_csp_lets_fetch_reach_the_archive_and_nothing_else_changes(
        self,
    ) -> None:
        csp = self.page()["Content-Security-Policy"]
        directives = dict(d.strip().split(" ", 1) for d in csp.split(";") if d.strip())
        self.assertEqual(directives["connect-src"], "'self' http://10.1.2.3:8042")
        expected = dict(
            d.strip().split(" ", 1)
            for d in abuse.CONTENT_SECURITY_POLICY.split(";")
            if d.strip()
        )
        del expected["connect-src"], directives["connect-src"]
        self.assertEqual(directives, expected)

    def test_a_default_port_is_written_out_in_the_csp(self) -> None:
        r = submitted_request(institution_name="Default Port Hospital")
        csp = self.page(r)["Content-Security-Policy"]
        self.assertIn("connect-src 'self' https://pacs.st-example.org:443;", csp)

    def test_the_other_public_pages_keep_the_strict_csp(self) -> None:
        response = self.client.get("/onboarding/")
        self.assertEqual(
            response["Content-Security-Policy"], abuse.CONTENT_SECURITY_POLICY
        )

    def test_it_offers_the_check_saying_which_origin_and_what_a_browser_can_tell(
        self,
    ) -> None:
        response = self.page()
        self.assertContains(response, 'data-qido-url="http://10.1.2.3:8042/dicom-web"')
        self.assertContains(response, 'data-credentials="true"')
        self.assertContains(response, f'data-record-url="{record_url(self.r)}"')
        self.assertContains(response, "integrations/browser-check.js")
        self.assertContains(
            response,
            '<code data-browser-check-origin id="tested-origin">http://testserver</code>',
        )
        self.assertContains(response, "not the uploader's")
        self.assertContains(response, "<code>https://pacsbin.com</code>")
        text = " ".join(html.unescape(response.content.decode()).split())
        self.assertIn(
            "A browser can only tell “worked” from “blocked by CORS or unreachable”",
            text.replace("<strong>", "").replace("</strong>", ""),
        )

    @override_settings(UPLOADER_ORIGINS=["http://testserver"])
    def test_it_says_when_the_check_is_exact_for_the_uploader(self) -> None:
        self.assertContains(self.page(), "the result holds for the uploader")

    def test_it_shows_copyable_fixit_configurations_without_writing_anything(
        self,
    ) -> None:
        with CaptureQueriesContext(connection) as queries:
            response = self.page()
        writes = [
            q["sql"]
            for q in queries.captured_queries
            if q["sql"].lstrip().upper().startswith(("INSERT", "UPDATE", "DELETE"))
        ]
        self.assertEqual(writes, [])
        self.assertFalse(DicomWebServer.objects.exists())
        self.assertFalse(Institution.objects.exists())
        page = html.unescape(response.content.decode())
        unsaved = DicomWebServer(
            institution=Institution(name=self.r.institution_name),
            name=self.r.server_name,
            qido_url=self.r.qido_url,
            wado_url=self.r.wado_url,
            needs_credentials=True,
        )
        for kind in proxyconfig.KINDS:
            self.assertIn(proxyconfig.render(unsaved, kind), page)
            self.assertContains(response, f'data-copy-target="fixit-{kind}"')
        self.assertIn('proxy_pass "http://10.1.2.3:8042/dicom-web/";', page)
        self.assertIn("https://registry.pacsbin.example", page)  # allowed too
        self.assertContains(response, "integrations/copy-config.js")

    def test_once_approved_it_checks_and_configures_the_live_server(self) -> None:
        r = submitted_request(institution_name="Live Hospital")
        server = approve_request(r, make_reviewer()).server
        server.qido_url = server.wado_url = "https://moved.example.org/dicomweb"
        server.save()
        response = self.page(r)
        self.assertContains(
            response, 'data-qido-url="https://moved.example.org/dicomweb"'
        )
        self.assertIn(
            "https://moved.example.org:443", response["Content-Security-Policy"]
        )
        self.assertIn(
            proxyconfig.render(server, "nginx"),
            html.unescape(response.content.decode()),
        )

    def test_it_lists_the_ten_newest_checks_newest_first_at_a_fixed_query_cost(
        self,
    ) -> None:
        def add(outcome: str, count: int) -> None:
            for _ in range(count):
                connectivity_runs.record_browser_check(
                    None,
                    "https://registry.example",
                    outcome,
                    [{"code": "browser_x", "message": f"Saw {outcome}."}],
                    onboarding_request=self.r,
                )

        add("cors_missing", 1)
        ConnectivityCheck.objects.update(
            created_at=timezone.now() - timedelta(minutes=10)
        )
        self.page()  # warm
        with CaptureQueriesContext(connection) as one:
            self.page()
        add("unreachable", 10)
        ConnectivityCheck.objects.filter(outcome="unreachable").update(
            created_at=timezone.now() - timedelta(minutes=5)
        )
        add("ok", 1)
        with self.assertNumQueries(len(one.captured_queries)):
            response = self.page()
        page = response.content.decode()
        table = page[page.index('id="recorded-checks"') :]
        self.assertEqual(table.count("<tr><td>"), 10)
        self.assertLess(table.index("Saw ok."), table.index("Saw unreachable."))
        self.assertNotIn("Saw cors_missing.", table)  # the oldest, 12th


class TheReviewPage(TestCase):
    @classmethod
    def setUpTestData(cls) -> None:
        cls.reviewer = make_reviewer()
        cls.r = submitted_request()

    def setUp(self) -> None:
        self.client.force_login(self.reviewer)

    def url(self) -> str:
        return f"/admin/integrations/onboardingrequest/{self.r.pk}/change/"

    def test_staff_see_what_the_contacts_browser_saw_before_approving(self) -> None:
        self.assertContains(self.client.get(self.url()), 'id="browser-checks-none"')
        connectivity_runs.record_browser_check(
            None,
            "https://registry.example",
            "cors_missing",
            [{"code": "browser_cors_blocked", "message": "Blocked <b>by</b> CORS."}],
            onboarding_request=self.r,
        )
        response = self.client.get(self.url())
        self.assertContains(response, 'id="browser-checks"')
        self.assertContains(response, "pi-outcome-failed")
        self.assertContains(response, "https://registry.example")
        self.assertContains(response, "Blocked &lt;b&gt;by&lt;/b&gt; CORS.")
