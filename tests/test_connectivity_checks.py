"""Recording checks: the model's contract shape, the flows, the admin (action,
history, fix-it configurations, browser-check endpoint) and check_servers."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command
from django.db import connection
from django.test import Client, TestCase, override_settings
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from integrations.connectivity import proxyconfig, record_browser_check, run_check
from integrations.models import (
    CheckOutcome,
    ConnectivityCheck,
    DicomWebServer,
    Institution,
)
from tests import peers

LOOPBACK = "http://127.0.0.1:9/dicom-web"  # refused by the guard: no traffic


def make_server(url: str = LOOPBACK, name: str = "University PACS") -> DicomWebServer:
    institution, _ = Institution.objects.get_or_create(name="University Hospital")
    return DicomWebServer.objects.create(
        institution=institution, name=name, qido_url=url, wado_url=url
    )


@override_settings(UPLOADER_ORIGINS=["https://pacsbin.com"], REGISTRY_PUBLIC_ORIGIN="")
class TestRunCheck(TestCase):
    @classmethod
    def setUpTestData(cls) -> None:
        cls.server = make_server()

    def test_it_records_a_blocked_check_for_the_first_uploader_origin(self) -> None:
        check = run_check(self.server)
        check.refresh_from_db()
        assert check.server == self.server
        assert check.source == "server"
        assert check.origin == "https://pacsbin.com"
        assert check.outcome == CheckOutcome.BLOCKED
        assert check.findings[0]["code"] == "blocked"
        assert "loopback" in check.findings[0]["message"]

    def test_to_dict_is_exactly_the_contract_shape(self) -> None:
        check = run_check(self.server, "https://Other.Example:8443")
        data = check.to_dict()
        assert list(data) == [
            "id",
            "created_at",
            "source",
            "origin",
            "outcome",
            "findings",
        ]
        assert data["id"] == check.pk
        assert data["origin"] == "https://other.example:8443"
        assert data["created_at"].endswith("Z")
        assert all(set(f) == {"code", "message"} for f in data["findings"])
        json.dumps(data)

    def test_a_malformed_origin_is_refused_by_name_and_nothing_is_written(
        self,
    ) -> None:
        with pytest.raises(ValidationError, match="pacsbin.com/path"):
            run_check(self.server, "https://pacsbin.com/path")
        assert not ConnectivityCheck.objects.exists()

    def test_run_check_does_not_record_browser_checks(self) -> None:
        with pytest.raises(ValueError, match="record_browser_check"):
            run_check(self.server, source="browser")


class TestRecordBrowserCheck(TestCase):
    @classmethod
    def setUpTestData(cls) -> None:
        cls.server = make_server()
        cls.user = get_user_model().objects.create_user("staff", is_staff=True)

    def test_it_records_what_the_browser_saw(self) -> None:
        findings = [{"code": "browser_cors_blocked", "message": "Blocked."}]
        check = record_browser_check(
            self.server, "https://registry.example", "cors_missing", findings, self.user
        )
        check.refresh_from_db()
        assert (check.source, check.origin, check.outcome) == (
            "browser",
            "https://registry.example",
            "cors_missing",
        )
        assert check.findings == findings
        assert check.created_by == self.user

    def test_every_bad_value_is_named_and_nothing_is_written(self) -> None:
        with pytest.raises(ValidationError) as caught:
            record_browser_check(
                self.server,
                "javascript:alert(1)",
                "splendid",
                [{"code": "ok"}, {"code": "Bad Code!", "message": "x"}],
            )
        errors = caught.value.message_dict
        assert "javascript:alert(1)" in errors["origin"][0]
        assert "splendid" in errors["outcome"][0]
        assert [m.split(" (")[0] for m in errors["findings"]] == [
            "Finding 1",
            "Finding 2",
        ]
        assert not ConnectivityCheck.objects.exists()

    def test_a_browser_cannot_claim_the_ssrf_guard_blocked_it(self) -> None:
        with pytest.raises(ValidationError, match="blocked"):
            record_browser_check(self.server, "https://a.example", "blocked", [])

    def test_sizes_are_capped(self) -> None:
        too_many = [{"code": "x", "message": "y"}] * 21
        long_message = [{"code": "x", "message": "y" * 1001}]
        for findings in (too_many, long_message, "not a list"):
            with pytest.raises(ValidationError):
                record_browser_check(self.server, "https://a.example", "ok", findings)
        assert not ConnectivityCheck.objects.exists()


@override_settings(UPLOADER_ORIGINS=["https://pacsbin.com"], REGISTRY_PUBLIC_ORIGIN="")
class TestTheServerAdmin(TestCase):
    @classmethod
    def setUpTestData(cls) -> None:
        cls.server = make_server()
        cls.other = make_server(name="Research PACS")
        cls.admin = get_user_model().objects.create_superuser("admin", "a@b.example")
        ConnectivityCheck.objects.create(
            server=cls.server,
            source="server",
            origin="https://pacsbin.com",
            outcome="cors_missing",
            findings=[{"code": "qido_cors_missing", "message": "No <b>header</b>."}],
        )

    def setUp(self) -> None:
        self.client.force_login(self.admin)

    def change_url(self, server: DicomWebServer) -> str:
        return reverse("admin:integrations_dicomwebserver_change", args=[server.pk])

    def record_url(self, server: DicomWebServer) -> str:
        return reverse(
            "admin:integrations_dicomwebserver_browser_check", args=[server.pk]
        )

    def test_the_action_runs_and_records_a_check_per_selected_server(self) -> None:
        response = self.client.post(
            reverse("admin:integrations_dicomwebserver_changelist"),
            {
                "action": "run_connectivity_check",
                "_selected_action": [self.server.pk, self.other.pk],
            },
            follow=True,
        )
        assert response.status_code == 200
        checks = ConnectivityCheck.objects.filter(source="server", outcome="blocked")
        assert sorted(c.server_id for c in checks) == sorted(
            [self.server.pk, self.other.pk]
        )
        assert all(c.created_by == self.admin for c in checks)
        messages = [str(m) for m in response.context["messages"]]
        assert any("Blocked by the SSRF guard" in m for m in messages)

    def test_the_server_page_shows_history_configs_and_the_browser_check(
        self,
    ) -> None:
        response = self.client.get(self.change_url(self.server))
        assert response.status_code == 200
        page = response.content.decode()
        assert '<span class="pi-badge pi-outcome-failed">CORS header missing' in page
        assert "No &lt;b&gt;header&lt;/b&gt;." in page  # findings are escaped
        nginx = proxyconfig.render(self.server, "nginx")
        assert "server_name dicomweb-proxy.example.org;" in page
        assert nginx.splitlines()[-2].strip() in page
        assert 'data-copy-target="pi-fixit-apache"' in page
        # What staff do next: the proxy's URLs become this server's.
        assert "this server's QIDO URL and WADO URL become" in page
        assert "data-browser-check" in page
        assert self.record_url(self.server) in page
        assert "integrations/browser-check.js" in page

    def test_the_history_costs_the_same_queries_however_long_it_is(self) -> None:
        def add_checks(count: int) -> None:
            ConnectivityCheck.objects.bulk_create(
                ConnectivityCheck(
                    server=self.other,
                    source="browser",
                    origin="https://a.example",
                    outcome="ok",
                    findings=[{"code": "browser_ok", "message": "Worked."}],
                    created_by=self.admin,
                )
                for _ in range(count)
            )

        add_checks(1)
        self.client.get(self.change_url(self.other))  # warm: session, caches
        with CaptureQueriesContext(connection) as one:
            self.client.get(self.change_url(self.other))
        add_checks(9)
        with self.assertNumQueries(len(one.captured_queries)):
            response = self.client.get(self.change_url(self.other))
        assert response.content.decode().count("pi-outcome-ok") == 10

    def test_the_browser_check_endpoint_records_the_report(self) -> None:
        report = {
            "outcome": "ok",
            "findings": [{"code": "browser_ok", "message": "Worked."}],
        }
        response = self.client.post(
            self.record_url(self.server),
            json.dumps(report),
            content_type="application/json",
            headers={"Origin": "http://testserver"},
        )
        assert response.status_code == 201
        check = ConnectivityCheck.objects.get(source="browser")
        assert response.json() == check.to_dict()
        assert check.origin == "http://testserver"
        assert check.created_by == self.admin
        assert check.server == self.server

    def test_a_bad_report_gets_400_naming_the_value_and_writes_nothing(self) -> None:
        response = self.client.post(
            self.record_url(self.server),
            json.dumps({"outcome": "perfect", "findings": []}),
            content_type="application/json",
        )
        assert response.status_code == 400
        assert "perfect" in response.json()["outcome"][0]
        for body in ("not json", "[]"):
            response = self.client.post(
                self.record_url(self.server), body, content_type="application/json"
            )
            assert response.status_code == 400
        assert not ConnectivityCheck.objects.filter(source="browser").exists()

    def test_the_endpoint_wants_post_csrf_and_staff(self) -> None:
        assert self.client.get(self.record_url(self.server)).status_code == 405
        strict = Client(enforce_csrf_checks=True)
        strict.force_login(self.admin)
        response = strict.post(
            self.record_url(self.server),
            json.dumps({"outcome": "ok", "findings": []}),
            content_type="application/json",
        )
        assert response.status_code == 403
        anonymous = Client().post(
            self.record_url(self.server),
            json.dumps({"outcome": "ok", "findings": []}),
            content_type="application/json",
        )
        assert anonymous.status_code == 302  # to the login page
        assert not ConnectivityCheck.objects.filter(source="browser").exists()

    def test_an_unknown_server_is_404(self) -> None:
        response = self.client.post(
            reverse("admin:integrations_dicomwebserver_browser_check", args=[999999]),
            "{}",
            content_type="application/json",
        )
        assert response.status_code == 404


@override_settings(UPLOADER_ORIGINS=["https://pacsbin.com"], REGISTRY_PUBLIC_ORIGIN="")
class TestCheckServersCommand(TestCase):
    @classmethod
    def setUpTestData(cls) -> None:
        cls.server = make_server()

    def test_a_failing_check_exits_non_zero_after_the_summary(self) -> None:
        out, err = io.StringIO(), io.StringIO()
        with pytest.raises(CommandError, match="1 of 1 check"):
            call_command("check_servers", "--all", stdout=out, stderr=err)
        # The ID column is as wide as the largest id, which on PostgreSQL
        # (sequences are not reset between tests) may be three digits.
        assert re.search(r"^ID +SERVER", out.getvalue(), re.MULTILINE)
        assert "blocked" in out.getvalue()
        assert "1/1" in err.getvalue()  # the progress bar
        assert ConnectivityCheck.objects.get().outcome == "blocked"

    def test_it_checks_each_origin_given(self) -> None:
        with pytest.raises(CommandError, match="2 of 2"):
            call_command(
                "check_servers",
                str(self.server.pk),
                "--origin",
                "https://a.example",
                "--origin",
                "https://b.example",
                stdout=io.StringIO(),
                stderr=io.StringIO(),
            )
        assert sorted(ConnectivityCheck.objects.values_list("origin", flat=True)) == [
            "https://a.example",
            "https://b.example",
        ]

    def test_bad_arguments_are_named(self) -> None:
        with pytest.raises(CommandError, match="No server with id 424242"):
            call_command("check_servers", "424242")
        with pytest.raises(CommandError, match="ids, or --all"):
            call_command("check_servers")
        with pytest.raises(CommandError, match="ftp://x"):
            call_command("check_servers", "--all", "--origin", "ftp://x")
        assert not ConnectivityCheck.objects.exists()


@pytest.mark.peers
@pytest.mark.django_db
@pytest.mark.usefixtures("allow_private")
def test_check_servers_exits_zero_when_the_proxied_archive_is_ok(
    orthanc: peers.Orthanc, tmp_path: Path, settings
) -> None:
    settings.UPLOADER_ORIGINS = ["https://pacsbin.com"]
    settings.REGISTRY_PUBLIC_ORIGIN = ""
    server = make_server(orthanc.dicomweb)
    with peers.nginx(tmp_path, proxyconfig.render(server, "nginx")) as proxy:
        server.qido_url = server.wado_url = f"{proxy}/dicom-web"
        server.save()
        out = io.StringIO()
        call_command("check_servers", str(server.pk), stdout=out, stderr=io.StringIO())
    assert "All 1 check(s) ok." in out.getvalue()
    check = ConnectivityCheck.objects.get(server=server)
    assert check.outcome == "ok"
    assert [f["code"] for f in check.findings] == [
        "preflight_ok",
        "qido_ok",
        "errors_have_cors",
        "wado_ok",
    ]
