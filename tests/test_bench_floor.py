from __future__ import annotations

import json

from django.test import TestCase, override_settings
from django.utils import timezone

from integrations.api.floor import floor_content
from integrations.models import ApiKey, Institution
from tests.api_helpers import api_key, key_header, server

FLOOR = "/api/v1/_floor"
JANE = "jane.doe@university.example"


class FloorIsOffByDefaultTests(TestCase):
    def test_a_normal_deployment_has_no_floor(self) -> None:
        _key, raw = api_key("uploader")
        response = self.client.get(FLOOR, {"email": JANE}, **key_header(raw))
        self.assertEqual(response.status_code, 404)


@override_settings(
    ROOT_URLCONF="tests.bench_floor_urls",
    BENCH_FLOOR=True,
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
            response = self.client.get(FLOOR, {"email": JANE}, **key_header(self.raw))
        self.assertEqual(response.status_code, 200)
        self.assertEqual(response.json(), floor_content(600))
        self.assertLess(abs(len(response.content) - 600), 100)
        other = self.client.get(FLOOR, {"email": "x@y.org"}, **key_header(self.raw))
        self.assertEqual(other.content, response.content)

    def test_it_sits_behind_the_same_key_check(self) -> None:
        self.assertEqual(self.client.get(FLOOR, {"email": JANE}).status_code, 401)
        response = self.client.get(FLOOR, {"email": JANE}, **key_header("x.y"))
        self.assertEqual(response.status_code, 401)

    def test_the_access_question_it_stands_for_costs_one_query_more(self) -> None:
        with self.assertNumQueries(2):
            response = self.client.get(
                "/api/v1/access", {"email": JANE}, **key_header(self.raw)
            )
        self.assertEqual(len(response.json()["servers"]), 1)
        self.assertEqual(json.loads(response.content)["servers"][0]["name"], "PACS")
