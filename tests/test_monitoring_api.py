"""GET /api/v1/servers/{id}/health and /metrics: answers, permissions, no 500."""

from __future__ import annotations

from datetime import UTC, datetime

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.core.cache import cache
from django.test import TestCase, override_settings

from integrations.models import ServerHealth
from tests.api_helpers import key_header
from tests.factories import api_key, make_institution, make_server

KEYS = {
    "state",
    "since",
    "last_checked_at",
    "last_ok_at",
    "outcome",
    "tls_expires_at",
    "capabilities",
}


class HealthEndpointTests(TestCase):
    @classmethod
    def setUpTestData(cls) -> None:
        cls.server = make_server(make_institution())
        cls.other = make_server(cls.server.institution, "Other PACS")
        cls.manage = key_header(api_key("ops", "manage")[1])
        cls.access = key_header(api_key("uploader", "access")[1])
        ServerHealth.objects.create(
            server=cls.server,
            state="failing",
            since=datetime(2026, 3, 2, 8, 15, tzinfo=UTC),
            last_checked_at=datetime(2026, 3, 2, 8, 30, 4, tzinfo=UTC),
            last_ok_at=datetime(2026, 3, 2, 8, 0, 3, tzinfo=UTC),
            outcome="cors_missing",
            tls_expires_at=datetime(2026, 5, 30, 23, 59, 59, tzinfo=UTC),
            capabilities={
                "includefield_tag": True,
                "fuzzy_matching": False,
                "no_match": "204",
                "not_a_capability": "dropped",
            },
        )

    def url(self, pk: object) -> str:
        return f"/api/v1/servers/{pk}/health"

    def test_it_answers_what_monitoring_knows(self) -> None:
        response = self.client.get(self.url(self.server.pk), **self.manage)
        assert response.status_code == 200
        assert response.json() == {
            "state": "failing",
            "since": "2026-03-02T08:15:00Z",
            "last_checked_at": "2026-03-02T08:30:04Z",
            "last_ok_at": "2026-03-02T08:00:03Z",
            "outcome": "cors_missing",
            "tls_expires_at": "2026-05-30T23:59:59Z",
            "capabilities": {
                "includefield_tag": True,
                "fuzzy_matching": False,
                "no_match": "204",
            },
        }

    def test_a_server_never_checked_is_unknown_with_empty_capabilities(self) -> None:
        body = self.client.get(self.url(self.other.pk), **self.manage).json()
        assert set(body) == KEYS
        assert body["state"] == "unknown"
        assert body["capabilities"] == {}
        assert body["since"] is None and body["outcome"] is None

    def test_no_credentials_is_401_and_an_access_key_is_403(self) -> None:
        assert self.client.get(self.url(self.server.pk)).status_code == 401
        assert (
            self.client.get(self.url(self.server.pk), **self.access).status_code == 403
        )

    def test_an_unknown_or_odd_id_is_404_not_500(self) -> None:
        for pk in ("999999", "99999999999999999999999", "%00", "x"):
            response = self.client.get(self.url(pk), **self.manage)
            assert response.status_code == 404, pk

    def test_only_get_is_allowed(self) -> None:
        response = self.client.post(self.url(self.server.pk), {}, **self.manage)
        assert response.status_code == 405

    def test_a_staff_session_needs_the_view_permission_on_servers(self) -> None:
        user = get_user_model().objects.create_user("s", "s@x.example", "pw")
        user.is_staff = True
        user.save()
        self.client.force_login(user)
        assert self.client.get(self.url(self.server.pk)).status_code == 403
        user.user_permissions.add(
            Permission.objects.get(codename="view_dicomwebserver")
        )
        response = self.client.get(self.url(self.server.pk))
        assert response.status_code == 200
        assert response.json()["state"] == "failing"


class MetricsTests(TestCase):
    def setUp(self) -> None:
        cache.clear()  # wrong tokens are counted per client (test_metrics_guard)

    @classmethod
    def setUpTestData(cls) -> None:
        cls.server = make_server(make_institution(), 'Main "PACS"\n')
        ServerHealth.objects.create(
            server=cls.server, state="ok", last_check_seconds=0.3
        )
        failing = make_server(cls.server.institution, "Second")
        ServerHealth.objects.create(
            server=failing, state="failing", last_check_seconds=12.0
        )
        make_server(cls.server.institution, "Third")  # never checked

    @override_settings(METRICS_TOKEN="")
    def test_metrics_are_off_without_a_token(self) -> None:
        assert self.client.get("/metrics").status_code == 404

    @override_settings(METRICS_TOKEN="s3cret-token")
    def test_no_or_a_wrong_token_is_refused(self) -> None:
        response = self.client.get("/metrics")
        assert response.status_code == 401
        assert response["WWW-Authenticate"].startswith("Bearer")
        for header in ("Bearer wrong", "Bearer s3cret-tokenX", "Bearer é\x00"):
            response = self.client.get("/metrics", HTTP_AUTHORIZATION=header)
            assert response.status_code == 403, header
        response = self.client.get("/metrics", HTTP_AUTHORIZATION="Basic s3cret-token")
        assert response.status_code == 401

    @override_settings(METRICS_TOKEN="s3cret-token")
    def test_the_token_gets_prometheus_text(self) -> None:
        response = self.client.get("/metrics", HTTP_AUTHORIZATION="Bearer s3cret-token")
        assert response.status_code == 200
        assert response["Content-Type"].startswith("text/plain; version=")
        text = response.content.decode()
        assert 'pacsbin_servers{state="ok"} 1.0' in text
        assert 'pacsbin_servers{state="failing"} 1.0' in text
        assert 'pacsbin_servers{state="unknown"} 1.0' in text
        assert (
            f'pacsbin_server_up{{institution="University Hospital",'
            f'server="Main \\"PACS\\"\\n",server_id="{self.server.pk}"}} 1.0'
        ) in text
        assert 'pacsbin_check_duration_seconds_bucket{le="0.5"} 1.0' in text
        assert 'pacsbin_check_duration_seconds_bucket{le="+Inf"} 2.0' in text
        assert "pacsbin_check_duration_seconds_sum 12.3" in text

    @override_settings(METRICS_TOKEN="s3cret-token")
    def test_only_reads_are_allowed(self) -> None:
        response = self.client.post(
            "/metrics", HTTP_AUTHORIZATION="Bearer s3cret-token"
        )
        assert response.status_code == 405
