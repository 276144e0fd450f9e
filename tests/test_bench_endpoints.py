"""The benchmark's floor and bare endpoints: served by ``bench.settings`` and
``bench.urls`` only, never by the product."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from django.conf import settings
from django.core import checks
from django.test import SimpleTestCase, TestCase, override_settings
from django.urls import URLPattern, URLResolver, get_resolver, resolve
from django.utils import timezone

import pacsbin_integrations.settings as product_settings
from bench.env import BARE_PATH, FLOOR_PATH
from bench.floor import floor_content
from integrations.api.views import api_not_found
from integrations.models import ApiKey, Institution
from tests.api_helpers import (
    key_header,
)
from tests.factories import (
    api_key,
    server,
)

ROOT = Path(__file__).resolve().parent.parent
JANE = "jane.doe@university.example"


def route_strings(resolver: URLResolver, prefix: str = "") -> list[str]:
    """Every route of a URLconf, nested includes spelled out."""
    routes = []
    for entry in resolver.url_patterns:
        route = prefix + str(entry.pattern)
        if isinstance(entry, URLResolver):
            routes += route_strings(entry, route)
        elif isinstance(entry, URLPattern):
            routes.append(route)
    return routes


class ProductKnowsNoBenchmarkTests(TestCase):
    def test_its_urlconf_has_no_floor_and_no_bare_route(self) -> None:
        routes = route_strings(get_resolver())
        self.assertIn("api/v1/access", routes)
        self.assertEqual([r for r in routes if "_floor" in r or "_bare" in r], [])
        self.assertIs(resolve(FLOOR_PATH).func, api_not_found)
        self.assertIs(resolve(BARE_PATH).func, api_not_found)

    def test_a_deployment_answers_them_with_the_api_404(self) -> None:
        _key, raw = api_key("uploader")
        for path in (FLOOR_PATH, BARE_PATH):
            response = self.client.get(path, {"email": JANE}, **key_header(raw))
            self.assertEqual(response.status_code, 404, path)
            self.assertEqual(response["Content-Type"], "application/json")

    def test_its_settings_have_no_bench_names(self) -> None:
        self.assertEqual(settings.ROOT_URLCONF, "pacsbin_integrations.urls")
        for names in (dir(product_settings), dir(settings)):
            self.assertEqual([n for n in names if n.startswith("BENCH")], [])

    def test_no_system_check_is_about_the_benchmark(self) -> None:
        names = [check.__name__ for check in checks.registry.registry.get_checks()]
        self.assertIn("check_onboarding_settings", names)
        self.assertEqual([n for n in names if "bench" in n], [])


PRINT_BENCH_SETTINGS = """
import django
django.setup()
from django.conf import settings as s
from django.urls import resolve
import bench.settings as bench
import pacsbin_integrations.settings as product
names = [n for n in dir(bench) if n.isupper() and not n.startswith("_")]
differ = [n for n in names if getattr(bench, n) != getattr(product, n, None)]
print(s.ROOT_URLCONF, s.BENCH_FLOOR_BYTES, *differ)
print(resolve("/api/v1/_floor").url_name, resolve("/api/v1/_bare").url_name)
"""


class BenchSettingsTests(SimpleTestCase):
    def start(self, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-c", PRINT_BENCH_SETTINGS],
            env={**os.environ, **env, "DJANGO_SETTINGS_MODULE": "bench.settings"},
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )

    def test_they_are_the_products_but_for_the_urlconf_and_the_floor_size(
        self,
    ) -> None:
        result = self.start(BENCH_FLOOR_BYTES="612")
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(
            result.stdout.splitlines(),
            ["bench.urls 612 BENCH_FLOOR_BYTES ROOT_URLCONF", "bench-floor bench-bare"],
        )

    def test_a_malformed_floor_size_stops_start_up_naming_it(self) -> None:
        result = self.start(BENCH_FLOOR_BYTES="6o0")
        self.assertNotEqual(result.returncode, 0)
        self.assertIn("BENCH_FLOOR_BYTES='6o0' is not a whole number", result.stderr)


@override_settings(
    ROOT_URLCONF="bench.urls",
    BENCH_FLOOR_BYTES=600,
    ACCESS_THROTTLE_RATE=None,
)
class FloorTests(TestCase):
    @classmethod
    def setUpTestData(cls) -> None:
        cls.key, cls.raw = api_key("bench")
        server(
            Institution.objects.create(name="University Hospital"),
            "PACS",
            emails=[JANE],
        )

    def setUp(self) -> None:
        ApiKey.objects.filter(pk=self.key.pk).update(last_used_at=timezone.now())

    def test_it_answers_constant_json_of_about_the_size_asked(self) -> None:
        with self.assertNumQueries(1):  # the key check, as the access question's
            response = self.client.get(
                FLOOR_PATH, {"email": JANE}, **key_header(self.raw)
            )
        self.assertEqual(response.status_code, 200)
        self.assertEqual(response.json(), floor_content(600))
        self.assertLess(abs(len(response.content) - 600), 100)
        other = self.client.get(
            FLOOR_PATH, {"email": "x@y.org"}, **key_header(self.raw)
        )
        self.assertEqual(other.content, response.content)

    def test_it_sits_behind_the_same_key_check(self) -> None:
        self.assertEqual(self.client.get(FLOOR_PATH, {"email": JANE}).status_code, 401)
        response = self.client.get(FLOOR_PATH, {"email": JANE}, **key_header("x.y"))
        self.assertEqual(response.status_code, 401)

    def test_the_access_question_it_stands_for_costs_one_query_more(self) -> None:
        with self.assertNumQueries(2):
            response = self.client.get(
                "/api/v1/access", {"email": JANE}, **key_header(self.raw)
            )
        self.assertEqual(len(response.json()["servers"]), 1)
        self.assertEqual(json.loads(response.content)["servers"][0]["name"], "PACS")


@override_settings(ROOT_URLCONF="bench.urls")
class BareTests(TestCase):
    def test_it_answers_a_small_json_after_exactly_one_query(self) -> None:
        with self.assertNumQueries(1):
            response = self.client.get(BARE_PATH, {"email": JANE})
        self.assertEqual(response.status_code, 200)
        self.assertEqual(response.json(), {"status": "ok", "one": 1})
        self.assertEqual(response["Cache-Control"], "no-store")

    def test_it_passes_the_same_middleware_as_the_health_check(self) -> None:
        bare = self.client.get(BARE_PATH)
        health = self.client.get("/api/v1/health")
        self.assertEqual(health.json(), {"status": "ok", "cache": "ok"})
        for header in (
            "X-Frame-Options",
            "X-Content-Type-Options",
            "Referrer-Policy",
            "Cross-Origin-Opener-Policy",
        ):
            self.assertEqual(bare[header], health[header], header)

    def test_it_only_answers_get(self) -> None:
        with self.assertNumQueries(0):
            response = self.client.post(BARE_PATH)
        self.assertEqual(response.status_code, 405)
