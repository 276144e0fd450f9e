"""METRICS_TOKEN must be long (check integrations.E020), and /metrics limits
wrong tokens per client: 10 per 10-minute window, then 429 with Retry-After.
A right token still works, costs no try, and changes nobody else's count."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from unittest import mock

from django.core.cache import cache
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.test import TestCase, override_settings

from integrations.monitoring import metrics
from tests.test_settings import check_ids

TOKEN = "m" * 32
RIGHT = f"Bearer {TOKEN}"
WRONG = "Bearer not-the-token-0123456789abcdef"
# The start of a 10-minute window.
T0 = 600.0 * 3_166_667


class MetricsTokenCheckTests(TestCase):
    @override_settings(METRICS_TOKEN="m" * 31)
    def test_a_short_token_is_an_error_naming_the_rule(self) -> None:
        assert check_ids() == ["integrations.E020"]
        with self.assertRaisesMessage(SystemCheckError, "at least 32"):
            call_command("check", "--deploy")

    @override_settings(METRICS_TOKEN=TOKEN)
    def test_a_token_of_32_characters_passes(self) -> None:
        assert check_ids() == []

    @override_settings(METRICS_TOKEN="")
    def test_no_token_is_no_error(self) -> None:
        assert check_ids() == []


@contextmanager
def clock(at: float) -> Iterator[None]:
    with mock.patch.object(metrics, "now", return_value=at):
        yield


@override_settings(METRICS_TOKEN=TOKEN)
class FailedTokenLimitTests(TestCase):
    def setUp(self) -> None:
        cache.clear()

    def scrape(self, header: str | None, address: str = "203.0.113.7") -> int:
        extra = {"REMOTE_ADDR": address}
        if header is not None:
            extra["HTTP_AUTHORIZATION"] = header
        return self.client.get("/metrics", **extra).status_code

    def test_ten_wrong_tokens_then_429_with_retry_after(self) -> None:
        with clock(T0):
            assert [self.scrape(WRONG) for _ in range(10)] == [403] * 10
        with clock(T0 + 5):
            response = self.client.get(
                "/metrics", HTTP_AUTHORIZATION=WRONG, REMOTE_ADDR="203.0.113.7"
            )
        assert response.status_code == 429
        assert response["Retry-After"] == "595"
        assert "595 seconds" in response.content.decode()

    def test_a_blocked_client_cannot_try_even_the_right_token(self) -> None:
        with clock(T0):
            for _ in range(10):
                self.scrape(WRONG)
            assert self.scrape(RIGHT) == 429
            assert self.scrape(None) == 429

    def test_another_client_is_not_blocked_and_resets_nothing(self) -> None:
        with clock(T0):
            for _ in range(10):
                self.scrape(WRONG)
            assert self.scrape(RIGHT, "198.51.100.9") == 200
            assert self.scrape(RIGHT) == 429
            assert self.scrape(WRONG, "198.51.100.9") == 403

    def test_the_next_window_gives_new_tries(self) -> None:
        with clock(T0):
            for _ in range(11):
                self.scrape(WRONG)
        with clock(T0 + 600):
            assert self.scrape(RIGHT) == 200

    def test_right_tokens_and_missing_ones_cost_no_try(self) -> None:
        with clock(T0):
            assert {self.scrape(RIGHT) for _ in range(30)} == {200}
            assert {self.scrape(None) for _ in range(30)} == {401}
            assert [self.scrape(WRONG) for _ in range(10)] == [403] * 10
            assert self.scrape(WRONG) == 429

    def test_an_ipv6_client_is_its_64(self) -> None:
        with clock(T0):
            for host in range(1, 11):
                assert self.scrape(WRONG, f"2001:db8::{host:x}") == 403
            assert self.scrape(RIGHT, "2001:db8::ffff") == 429
            assert self.scrape(RIGHT, "2001:db8:0:1::1") == 200

    @override_settings(TRUSTED_PROXIES=1)
    def test_behind_a_proxy_the_forwarded_client_is_counted(self) -> None:
        def scrape(header: str, client: str) -> int:
            return self.client.get(
                "/metrics",
                HTTP_AUTHORIZATION=header,
                REMOTE_ADDR="10.0.0.1",
                HTTP_X_FORWARDED_FOR=client,
            ).status_code

        with clock(T0):
            for _ in range(10):
                scrape(WRONG, "203.0.113.7")
            assert scrape(RIGHT, "203.0.113.7") == 429
            assert scrape(RIGHT, "203.0.113.8") == 200
