"""POST/GET /api/v1/servers/{id}/checks/ and GET .../proxy-config/{kind}."""

from __future__ import annotations

import pytest
from django.test import TestCase

from integrations.models import ConnectivityCheck, Institution
from tests import peers
from tests.api_helpers import (
    key_header,
)
from tests.factories import (
    api_key,
    server,
)


class ChecksEndpointTests(TestCase):
    @classmethod
    def setUpTestData(cls) -> None:
        institution = Institution.objects.create(name="University Hospital")
        cls.server = server(institution, "Main PACS")
        cls.server.qido_url = cls.server.wado_url = "http://127.0.0.1:9/dicom-web"
        cls.server.save()
        cls.manage = key_header(api_key("ops", "manage")[1])
        cls.access = key_header(api_key("uploader", "access")[1])

    def url(self) -> str:
        return f"/api/v1/servers/{self.server.pk}/checks/"

    def test_a_check_on_a_loopback_archive_is_blocked_by_the_ssrf_guard(self) -> None:
        response = self.client.post(
            self.url(), {}, content_type="application/json", **self.manage
        )
        assert response.status_code == 201
        body = response.json()
        assert set(body) == {
            "id",
            "created_at",
            "source",
            "origin",
            "outcome",
            "findings",
        }
        assert (body["source"], body["origin"], body["outcome"]) == (
            "server",
            "https://pacsbin.com",
            "blocked",
        )
        assert body["findings"] and set(body["findings"][0]) == {"code", "message"}
        stored = ConnectivityCheck.objects.get()
        assert stored.to_dict() == body

    def test_the_origin_can_be_chosen(self) -> None:
        response = self.client.post(
            self.url(),
            {"origin": "https://Other.example"},
            content_type="application/json",
            **self.manage,
        )
        assert response.json()["origin"] == "https://other.example"

    def test_a_bad_origin_is_a_400_naming_it_and_records_nothing(self) -> None:
        response = self.client.post(
            self.url(),
            {"origin": "pacsbin.com/app"},
            content_type="application/json",
            **self.manage,
        )
        assert response.status_code == 400
        assert "pacsbin.com/app" in response.json()["origin"][0]
        assert not ConnectivityCheck.objects.exists()

    def test_past_checks_are_listed_newest_first(self) -> None:
        for origin in ("https://a.example", "https://b.example"):
            self.client.post(
                self.url(),
                {"origin": origin},
                content_type="application/json",
                **self.manage,
            )
        response = self.client.get(self.url(), **self.manage)
        assert response.status_code == 200
        assert [c["origin"] for c in response.json()["results"]] == [
            "https://b.example",
            "https://a.example",
        ]

    def test_an_access_key_may_not_run_checks_and_nobody_anonymous(self) -> None:
        assert self.client.post(self.url(), **self.access).status_code == 403
        assert self.client.get(self.url()).status_code == 401
        assert not ConnectivityCheck.objects.exists()

    def test_an_unknown_server_is_a_404(self) -> None:
        response = self.client.post("/api/v1/servers/999999/checks/", **self.manage)
        assert response.status_code == 404


class ProxyConfigEndpointTests(TestCase):
    @classmethod
    def setUpTestData(cls) -> None:
        institution = Institution.objects.create(name="University Hospital")
        cls.server = server(institution, "Main PACS")
        cls.manage = key_header(api_key("ops", "manage")[1])

    def test_each_kind_is_plain_text_ready_to_paste(self) -> None:
        expected = {
            "nginx": "server {",
            "apache": "<VirtualHost",
            "caddy": "reverse_proxy",
        }
        for kind, marker in expected.items():
            response = self.client.get(
                f"/api/v1/servers/{self.server.pk}/proxy-config/{kind}", **self.manage
            )
            assert response.status_code == 200
            assert response["Content-Type"] == "text/plain; charset=utf-8"
            text = response.content.decode()
            assert marker in text
            assert "https://pacsbin.com" in text
            assert "https://main-pacs.example" in text

    def test_an_unknown_kind_is_a_404_naming_it(self) -> None:
        response = self.client.get(
            f"/api/v1/servers/{self.server.pk}/proxy-config/iis", **self.manage
        )
        assert response.status_code == 404
        assert "“iis”" in response.json()["detail"]

    def test_it_needs_authentication(self) -> None:
        response = self.client.get(
            f"/api/v1/servers/{self.server.pk}/proxy-config/nginx"
        )
        assert response.status_code == 401


@pytest.mark.peers
@pytest.mark.django_db
def test_a_check_through_the_api_against_real_orthanc_reports_missing_cors(
    client, orthanc: peers.Orthanc, allow_private: None
) -> None:
    institution = Institution.objects.create(name="Orthanc Hospital")
    row = server(institution, "Orthanc")
    row.qido_url = row.wado_url = orthanc.dicomweb
    row.save()
    response = client.post(
        f"/api/v1/servers/{row.pk}/checks/",
        {},
        content_type="application/json",
        **key_header(api_key("ops", "manage")[1]),
    )
    assert response.status_code == 201
    assert response.json()["outcome"] == "cors_missing"
