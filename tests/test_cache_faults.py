"""The shared cache is never a hard dependency: with Redis gone the access
answer is still served (counting per process), the log says so once, and
/api/v1/health reports the cache's state without failing on it.

These run in process against a Redis address where nothing listens (refused
at once); tests/test_faults.py does it with a real redis-server stopped and
frozen under a served instance."""

from __future__ import annotations

import logging
import uuid
from unittest import mock

import redis
from django.core.cache import caches
from django.test import SimpleTestCase, TestCase, override_settings

from integrations import cache as fault_tolerant
from integrations import ratelimit
from integrations.api.throttling import AccessThrottle
from tests.api_helpers import key_header
from tests.factories import api_key
from tests.peers import free_port

URL = "/api/v1/access"


def dead_redis(retry_seconds: float = 5.0) -> fault_tolerant.FaultTolerantRedisCache:
    """The backend pointed at a loopback port where nothing listens."""
    return fault_tolerant.FaultTolerantRedisCache(
        f"redis://127.0.0.1:{free_port()}/9",
        {
            "KEY_PREFIX": f"test-{uuid.uuid4().hex}",
            "RETRY_SECONDS": retry_seconds,
            "OPTIONS": {"socket_connect_timeout": 0.25, "socket_timeout": 0.25},
        },
    )


def dead_redis_settings() -> dict[str, dict[str, object]]:
    return {
        "default": {
            "BACKEND": "integrations.cache.FaultTolerantRedisCache",
            "LOCATION": f"redis://127.0.0.1:{free_port()}/9",
            "KEY_PREFIX": f"test-{uuid.uuid4().hex}",
            "OPTIONS": {"socket_connect_timeout": 0.25, "socket_timeout": 0.25},
        }
    }


class FaultTolerantCacheTests(SimpleTestCase):
    def test_counting_falls_back_to_this_process_and_logs_once(self) -> None:
        cache = dead_redis()
        with self.assertLogs("integrations.cache", logging.WARNING) as logs:
            counts = [ratelimit.count(cache, "k", timeout=60) for _ in range(50)]
        self.assertEqual(counts, list(range(1, 51)))
        self.assertEqual(len(logs.records), 1, logs.output)
        self.assertIn("unavailable", logs.output[0])
        self.assertIn("counted per process", logs.output[0])

    def test_threads_of_one_process_share_the_breaker_and_the_count(self) -> None:
        """Django makes one cache object per thread (gunicorn's gthread)."""
        location = f"redis://127.0.0.1:{free_port()}/9"
        per_thread = [
            fault_tolerant.FaultTolerantRedisCache(location, {}) for _ in range(4)
        ]
        with self.assertLogs("integrations.cache", logging.WARNING) as logs:
            counts = [ratelimit.count(c, "k", timeout=60) for c in per_thread * 3]
        self.assertEqual(counts, list(range(1, 13)))
        self.assertEqual(len(logs.records), 1, logs.output)

    def test_the_log_never_shows_the_urls_password(self) -> None:
        cache = fault_tolerant.FaultTolerantRedisCache(
            f"redis://:s3cret-pass@127.0.0.1:{free_port()}/9", {}
        )
        with self.assertLogs("integrations.cache", logging.WARNING) as logs:
            cache.get("k")
        self.assertNotIn("s3cret-pass", "\n".join(logs.output))

    def test_redis_is_not_asked_again_until_the_pause_is_over(self) -> None:
        cache = dead_redis(retry_seconds=60)
        down = redis.exceptions.TimeoutError("Timeout reading from socket")
        with (
            mock.patch.object(fault_tolerant.RedisCache, "incr", side_effect=down),
            mock.patch.object(fault_tolerant.RedisCache, "add", side_effect=down),
            self.assertLogs("integrations.cache", logging.WARNING),
        ):
            for _ in range(20):
                ratelimit.count(cache, "k", timeout=60)
            asked = fault_tolerant.RedisCache.incr.call_count  # type: ignore[attr-defined]
            asked += fault_tolerant.RedisCache.add.call_count  # type: ignore[attr-defined]
        self.assertEqual(asked, 1)

    def test_after_the_pause_one_caller_asks_again_and_recovery_is_logged(
        self,
    ) -> None:
        cache = dead_redis(retry_seconds=60)
        with self.assertLogs("integrations.cache", logging.WARNING):
            cache.set("k", "memory")
        self.assertEqual(cache.state(), "unavailable")
        cache.breaker.open_until = 0.0  # the pause is over
        with (
            mock.patch.object(fault_tolerant.RedisCache, "get", return_value="redis"),
            self.assertLogs("integrations.cache", logging.WARNING) as logs,
        ):
            self.assertEqual(cache.get("k"), "redis")
        self.assertIn("answers again", logs.output[0])
        self.assertFalse(cache.breaker.down)

    def test_state_is_ok_for_the_per_process_cache(self) -> None:
        self.assertEqual(fault_tolerant.state(caches["default"]), "ok")


class AccessWithoutRedisTests(TestCase):
    @classmethod
    def setUpTestData(cls) -> None:
        cls.key, cls.raw = api_key("uploader", "access")

    def test_the_access_answer_is_served_when_the_cache_is_down(self) -> None:
        with (
            mock.patch.object(AccessThrottle, "cache", dead_redis()),
            self.assertLogs("integrations.cache", logging.WARNING),
        ):
            for _ in range(5):
                response = self.client.get(
                    URL, {"email": "jane@university.edu"}, **key_header(self.raw)
                )
                self.assertEqual(response.status_code, 200, response.content)

    @override_settings(ACCESS_THROTTLE_RATE=(3, 60))
    def test_the_throttle_still_counts_per_process(self) -> None:
        with (
            mock.patch.object(AccessThrottle, "cache", dead_redis()),
            self.assertLogs("integrations.cache", logging.WARNING),
        ):
            statuses = [
                self.client.get(
                    URL, {"email": "jane@university.edu"}, **key_header(self.raw)
                ).status_code
                for _ in range(4)
            ]
        self.assertEqual(statuses, [200, 200, 200, 429])

    def test_onboarding_rate_limit_degrades_the_same_way(self) -> None:
        with (
            override_settings(CACHES=dead_redis_settings()),
            self.assertLogs("integrations.cache", logging.WARNING),
        ):
            response = self.client.post("/onboarding/", {})
        self.assertIn(response.status_code, (200, 400))


class HealthReportsTheCacheTests(TestCase):
    URL = "/api/v1/health"

    def test_it_keeps_200_and_says_the_cache_is_unavailable(self) -> None:
        with (
            override_settings(CACHES=dead_redis_settings()),
            self.assertLogs("integrations.cache", logging.WARNING),
        ):
            response = self.client.get(self.URL)
        self.assertEqual(response.status_code, 200)
        self.assertEqual(response.json(), {"status": "ok", "cache": "unavailable"})

    def test_a_cache_that_raises_anything_is_unavailable_not_a_500(self) -> None:
        with (
            mock.patch.object(
                fault_tolerant.FaultTolerantRedisCache,
                "state",
                side_effect=RuntimeError("odd"),
                create=True,
            ),
            override_settings(CACHES=dead_redis_settings()),
            self.assertLogs("integrations.cache", logging.ERROR),
        ):
            response = self.client.get(self.URL)
        self.assertEqual(response.status_code, 200)
        self.assertEqual(response.json()["cache"], "unavailable")
