"""Throttling of the access question: per key, shared by every worker."""

from __future__ import annotations

import os
import subprocess
import sys
import unittest
import uuid
from pathlib import Path
from unittest import mock

import redis
from django.core.cache.backends.redis import RedisCache
from django.test import SimpleTestCase, TestCase, override_settings

from integrations.api.throttling import AccessThrottle
from tests.api_helpers import (
    JWT_SECRET,
    bearer_header,
    fresh_throttle_cache,
    key_header,
    user_token,
)
from tests.factories import (
    api_key,
)

URL = "/api/v1/access"
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
ROOT = Path(__file__).resolve().parent.parent


def require_redis() -> None:
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1).ping()
    except redis.RedisError:
        if os.environ.get("CI"):
            raise
        raise unittest.SkipTest(f"no Redis at {REDIS_URL}") from None


def redis_worker(prefix: str) -> RedisCache:
    """A cache client of its own, as each worker process has."""
    return RedisCache(REDIS_URL, {"KEY_PREFIX": prefix})


def clear_prefix(prefix: str) -> None:
    client = redis.Redis.from_url(REDIS_URL)
    for key in client.scan_iter(f"{prefix}:*"):
        client.delete(key)


@override_settings(ACCESS_THROTTLE_RATE=(3, 60))
class AccessThrottleTests(TestCase):
    @classmethod
    def setUpTestData(cls) -> None:
        cls.key, cls.raw = api_key("uploader", "access")

    def setUp(self) -> None:
        fresh_throttle_cache(self)

    def ask(self, raw: str):
        return self.client.get(URL, {"email": "jane@x.example"}, **key_header(raw))

    def test_past_the_rate_a_key_gets_429_with_retry_after(self) -> None:
        for _ in range(3):
            self.assertEqual(self.ask(self.raw).status_code, 200)
        response = self.ask(self.raw)
        self.assertEqual(response.status_code, 429)
        self.assertTrue(1 <= int(response["Retry-After"]) <= 60)
        self.assertIn("throttled", response.json()["detail"])

    def test_each_key_has_its_own_count(self) -> None:
        for _ in range(4):
            self.ask(self.raw)
        _other, other_raw = api_key("viewer", "access")
        self.assertEqual(self.ask(other_raw).status_code, 200)

    @override_settings(UPLOADER_JWT_SECRET=JWT_SECRET)
    def test_bearer_callers_are_counted_per_email(self) -> None:
        jane = bearer_header(user_token("jane@x.example"))
        for _ in range(3):
            self.assertEqual(self.client.get(URL, **jane).status_code, 200)
        self.assertEqual(self.client.get(URL, **jane).status_code, 429)
        again = bearer_header(user_token("JANE@x.example"))  # same email, other case
        self.assertEqual(self.client.get(URL, **again).status_code, 429)
        john = bearer_header(user_token("john@x.example"))
        self.assertEqual(self.client.get(URL, **john).status_code, 200)

    def test_the_count_starts_again_in_the_next_window(self) -> None:
        with mock.patch("integrations.api.throttling.time.time", return_value=6000.0):
            for _ in range(4):
                self.ask(self.raw)
            self.assertEqual(self.ask(self.raw).status_code, 429)
        with mock.patch("integrations.api.throttling.time.time", return_value=6060.0):
            self.assertEqual(self.ask(self.raw).status_code, 200)

    def test_unauthenticated_calls_are_refused_before_counting(self) -> None:
        for _ in range(5):
            self.assertEqual(
                self.client.get(URL, {"email": "a@b.example"}).status_code, 401
            )
        self.assertEqual(self.ask(self.raw).status_code, 200)

    def test_other_methods_are_refused_before_counting(self) -> None:
        for _ in range(5):
            response = self.client.post(
                f"{URL}?email=jane@x.example", {}, **key_header(self.raw)
            )
            self.assertEqual(response.status_code, 405)
        self.assertEqual(self.ask(self.raw).status_code, 200)

    @override_settings(ACCESS_THROTTLE_RATE=None)
    def test_off_means_no_limit(self) -> None:
        for _ in range(6):
            self.assertEqual(self.ask(self.raw).status_code, 200)


@override_settings(ACCESS_THROTTLE_RATE=(3, 60))
class SharedRedisThrottleTests(TestCase):
    """Two workers, each with its own Redis client, share one count."""

    @classmethod
    def setUpTestData(cls) -> None:
        cls.key, cls.raw = api_key("uploader", "access")

    def setUp(self) -> None:
        require_redis()
        self.prefix = f"test-throttle-{uuid.uuid4().hex}"
        self.addCleanup(clear_prefix, self.prefix)
        self.workers = [redis_worker(self.prefix), redis_worker(self.prefix)]

    def ask_through(self, worker: RedisCache):
        with mock.patch.object(AccessThrottle, "cache", worker):
            return self.client.get(
                URL, {"email": "jane@x.example"}, **key_header(self.raw)
            )

    def test_the_rate_holds_across_two_workers(self) -> None:
        first, second = self.workers
        self.assertEqual(self.ask_through(first).status_code, 200)
        self.assertEqual(self.ask_through(second).status_code, 200)
        self.assertEqual(self.ask_through(first).status_code, 200)
        response = self.ask_through(second)
        self.assertEqual(response.status_code, 429)
        self.assertIn("Retry-After", response.headers)
        self.assertEqual(self.ask_through(first).status_code, 429)


WORKER_SCRIPT = """
import os, sys
import django
django.setup()
from unittest import mock
from django.test import RequestFactory
from rest_framework.request import Request
from integrations.api.auth import ApiClient
from integrations.api.throttling import AccessThrottle
from integrations.models import ApiKey

request = Request(RequestFactory().get("/api/v1/access"))
request.user = ApiClient(ApiKey(pk=424242, name="shared"))
allowed = 0
# A fixed clock: the whole run falls in one window, whenever it runs.
with mock.patch("integrations.api.throttling.time.time", return_value=7_200_000.0):
    for _ in range(int(sys.argv[1])):
        allowed += AccessThrottle().allow_request(request, None)
print(allowed)
"""


class TwoProcessesShareTheCountTests(SimpleTestCase):
    def test_two_worker_processes_together_allow_exactly_the_rate(self) -> None:
        require_redis()
        prefix = f"test-throttle-{uuid.uuid4().hex}"
        self.addCleanup(clear_prefix, prefix)
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "pacsbin_integrations.settings",
            "CACHE_URL": REDIS_URL,
            "CACHE_KEY_PREFIX": prefix,
            "ACCESS_THROTTLE_RATE": "60/hour",
        }
        workers = [
            subprocess.Popen(
                [sys.executable, "-c", WORKER_SCRIPT, "50"],
                cwd=ROOT,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(2)
        ]
        results = [worker.communicate(timeout=60) for worker in workers]
        for worker, (_out, err) in zip(workers, results, strict=True):
            self.assertEqual(worker.returncode, 0, err)
        allowed = [int(out.strip().splitlines()[-1]) for out, _err in results]
        # 100 requests against a rate of 60: no count lost to a race.
        self.assertEqual(sum(allowed), 60, allowed)


class ThrottleRateSettingTests(SimpleTestCase):
    def rate(self, value: str):
        from pacsbin_integrations import settings as project_settings

        with mock.patch.dict(os.environ, {"ACCESS_THROTTLE_RATE": value}):
            return project_settings._rate("ACCESS_THROTTLE_RATE", "600/min")

    def test_it_reads_a_count_per_period(self) -> None:
        self.assertEqual(self.rate("600/min"), (600, 60))
        self.assertEqual(self.rate("600/minute"), (600, 60))
        self.assertEqual(self.rate(" 10/S "), (10, 1))
        self.assertEqual(self.rate("5000/hour"), (5000, 3600))
        self.assertEqual(self.rate("100000/day"), (100000, 86400))

    def test_off_disables_it(self) -> None:
        self.assertIsNone(self.rate("off"))

    def test_anything_else_stops_start_up_naming_the_variable(self) -> None:
        from django.core.exceptions import ImproperlyConfigured

        for value in [
            "600",
            "600/fortnight",
            "600/m",
            "0/min",
            "-1/min",
            "ten/min",
            "6O0/min",
            "²/s",
        ]:
            with (
                self.subTest(value=value),
                self.assertRaisesMessage(ImproperlyConfigured, "ACCESS_THROTTLE_RATE"),
            ):
                self.rate(value)
