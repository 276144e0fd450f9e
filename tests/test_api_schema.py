"""The OpenAPI document, its UI without a CDN, and a schemathesis run over
every operation in-process (no 5xx; every answer conforms to the schema)."""

from __future__ import annotations

from unittest import mock

import pytest
import schemathesis
from django.core.handlers.wsgi import WSGIHandler
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from django.test import TestCase
from drf_spectacular.generators import SchemaGenerator
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from integrations import registry
from integrations.api import access
from integrations.connectivity import proxyconfig
from integrations.models import DicomWebServer, Institution
from tests.factories import (
    api_key,
)


class SchemaDocumentTests(TestCase):
    def test_the_schema_is_served_without_authentication(self) -> None:
        response = self.client.get("/api/schema/", HTTP_ACCEPT="application/json")
        self.assertEqual(response.status_code, 200)
        paths = response.json()["paths"]
        for path in [
            "/api/v1/access",
            "/api/v1/health",
            "/api/v1/institutions/",
            "/api/v1/institutions/{id}/",
            "/api/v1/servers/",
            "/api/v1/servers/{id}/",
            "/api/v1/servers/{server_id}/approved-users/",
            "/api/v1/servers/{server_id}/approved-users/{email}",
            "/api/v1/servers/{server_id}/checks/",
            "/api/v1/servers/{server_id}/proxy-config/{kind}",
        ]:
            self.assertIn(path, paths)

    def test_every_operation_documents_its_errors(self) -> None:
        schema = SchemaGenerator().get_schema(request=None, public=True)
        for path, operations in schema["paths"].items():
            for method, operation in operations.items():
                if path in ("/api/v1/health", "/api/v1/edge/jwks.json"):
                    continue  # public, no credentials to refuse
                with self.subTest(path=path, method=method):
                    self.assertLessEqual({"401", "403"}, set(operation["responses"]))
        access = schema["paths"]["/api/v1/access"]["get"]["responses"]
        self.assertLessEqual({"200", "304", "400", "401", "403", "429"}, set(access))

    def test_its_enums_and_examples_are_the_codes_own_values(self) -> None:
        schema = SchemaGenerator().get_schema(request=None, public=True)
        paths = schema["paths"]

        def parameter(path: str, name: str) -> dict:
            operation = paths[path]["get"]
            return next(p for p in operation["parameters"] if p["name"] == name)

        # drf-spectacular sorts an enum's values.
        self.assertEqual(
            parameter("/api/v1/access", "format")["schema"]["enum"],
            sorted(access.FORMATS),
        )
        self.assertEqual(
            parameter("/api/v1/servers/", "status")["schema"]["enum"],
            sorted(DicomWebServer.Status.values),
        )
        self.assertEqual(
            parameter("/api/v1/servers/{server_id}/proxy-config/{kind}", "kind")[
                "schema"
            ]["enum"],
            sorted(proxyconfig.ALL_KINDS),
        )
        ohif = paths["/api/v1/access"]["get"]["responses"]["200"]["content"][
            "application/json"
        ]["examples"]["Ohif"]["value"]
        source = ohif["dataSources"][0]
        self.assertEqual(source["namespace"], access.OHIF_NAMESPACE)
        self.assertEqual(ohif["defaultDataSourceName"], source["sourceName"])

    def test_the_docs_page_loads_its_assets_from_this_server(self) -> None:
        response = self.client.get("/api/docs/")
        self.assertEqual(response.status_code, 200)
        html = response.content.decode()
        self.assertIn("/static/drf_spectacular_sidecar/swagger-ui-dist/", html)
        self.assertNotRegex(html, r"(src|href)=\"https?://")


# --- schemathesis ----------------------------------------------------------------

schema = schemathesis.openapi.from_dict(
    SchemaGenerator().get_schema(request=None, public=True)
)
schema.app = WSGIHandler()

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


@pytest.fixture
def manage_key(db, settings):
    settings.ACCESS_THROTTLE_RATE = None
    # What Django's test client does: keep the test's transaction open across
    # the in-process requests instead of closing the connection after each.
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    institution = Institution.objects.create(name="University Hospital")
    server = DicomWebServer.objects.create(
        institution=institution,
        name="PACS",
        qido_url="https://pacs.example/dicomweb",
        wado_url="https://pacs.example/dicomweb",
        status="active",
    )
    registry.add_approved_users(server, ["jane@university.example"])
    _key, raw = api_key("schemathesis", "manage")
    # Running a check resolves the archive's name: answer every name with a
    # documentation address, which the SSRF guard refuses, so no lookup or
    # request ever leaves this machine.
    with mock.patch(
        "integrations.connectivity.ssrf.resolve", return_value=["192.0.2.1"]
    ):
        yield raw
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@schema.parametrize()
@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
    database=None,
)
def test_every_operation_answers_within_its_schema(case, manage_key) -> None:
    case.call_and_validate(
        headers={"Authorization": f"Api-Key {manage_key}"}, checks=CHECKS
    )
