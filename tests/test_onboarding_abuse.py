"""Abuse guards of the public pages: CSRF, honeypot, rate limit (shared
cache, client address behind trusted proxies), email cap, body size cap."""

from __future__ import annotations

import os
import uuid

import pytest
from django.core import mail
from django.core.cache import caches
from django.test import Client, RequestFactory, TestCase, override_settings

from integrations.models import OnboardingRequest
from integrations.onboarding.abuse import MAX_BODY_BYTES, rate_key
from tests.onboarding_helpers import (
    FORM_URL,
    FreshRateLimit,
    form_data,
)


class Csrf(FreshRateLimit, TestCase):
    def test_a_post_without_the_csrf_token_is_refused_and_writes_nothing(self) -> None:
        client = Client(enforce_csrf_checks=True)
        response = client.post(FORM_URL, form_data())
        self.assertEqual(response.status_code, 403)
        self.assertEqual(OnboardingRequest.objects.count(), 0)

    def test_a_post_with_the_token_from_the_form_is_accepted(self) -> None:
        client = Client(enforce_csrf_checks=True)
        page = client.get(FORM_URL)
        token = page.context["csrf_token"]
        response = client.post(
            FORM_URL, {**form_data(), "csrfmiddlewaretoken": str(token)}
        )
        self.assertEqual(response.status_code, 302)
        self.assertEqual(OnboardingRequest.objects.count(), 1)


class Honeypot(FreshRateLimit, TestCase):
    def test_a_filled_honeypot_is_refused_and_nobody_is_emailed(self) -> None:
        with self.captureOnCommitCallbacks(execute=True):
            response = self.client.post(
                FORM_URL, form_data(leave_blank="http://spam.example")
            )
        self.assertEqual(response.status_code, 400)
        self.assertContains(response, "could not be accepted", status_code=400)
        self.assertEqual(OnboardingRequest.objects.count(), 0)
        self.assertEqual(mail.outbox, [])

    def test_the_honeypot_is_hidden_from_people_and_assistive_technology(self) -> None:
        html = self.client.get(FORM_URL).content.decode()
        self.assertRegex(html, r'<div class="hp" aria-hidden="true">')
        self.assertRegex(html, r'name="leave_blank"[^>]*tabindex="-1"')


@override_settings(ONBOARDING_SUBMISSIONS_PER_HOUR=3)
class RateLimit(FreshRateLimit, TestCase):
    def post(self, client_address: str = "203.0.113.5", **extra: str):
        return self.client.post(
            FORM_URL, form_data(), REMOTE_ADDR=client_address, **extra
        )

    def test_the_fourth_submission_in_an_hour_is_refused_with_the_text_kept(
        self,
    ) -> None:
        for _ in range(3):
            self.assertEqual(self.post().status_code, 302)
        response = self.post()
        self.assertEqual(response.status_code, 429)
        html = response.content.decode()
        self.assertIn("Too many submissions from your network", html)
        self.assertIn('value="St. Example Hospital"', html)
        self.assertEqual(OnboardingRequest.objects.count(), 3)

    def test_failed_attempts_count_too(self) -> None:
        for _ in range(3):
            self.client.post(
                FORM_URL, form_data(emails="nope"), REMOTE_ADDR="203.0.113.5"
            )
        self.assertEqual(self.post().status_code, 429)

    def test_other_clients_are_not_affected(self) -> None:
        for _ in range(4):
            self.post()
        self.assertEqual(self.post("203.0.113.99").status_code, 302)

    def test_one_ipv6_client_cannot_escape_by_rotating_within_its_64(self) -> None:
        for n in range(3):
            self.assertEqual(self.post(f"2001:db8:1:2::{n + 1}").status_code, 302)
        self.assertEqual(self.post("2001:db8:1:2:ffff::9").status_code, 429)
        self.assertEqual(self.post("2001:db8:1:3::1").status_code, 302)

    @override_settings(TRUSTED_PROXIES=1)
    def test_behind_a_proxy_the_forwarded_address_counts_and_cannot_be_spoofed(
        self,
    ) -> None:
        for n in range(3):
            # The client writes its own X-Forwarded-For; the proxy appends
            # the address it saw, which is the one that counts.
            forwarded = f"10.0.0.{n}, 198.51.100.20"
            response = self.post("127.0.0.1", HTTP_X_FORWARDED_FOR=forwarded)
            self.assertEqual(response.status_code, 302)
        response = self.post("127.0.0.1", HTTP_X_FORWARDED_FOR="9.9.9.9, 198.51.100.20")
        self.assertEqual(response.status_code, 429)
        other = self.post("127.0.0.1", HTTP_X_FORWARDED_FOR="198.51.100.21")
        self.assertEqual(other.status_code, 302)
        stored = set(OnboardingRequest.objects.values_list("client_address", flat=True))
        self.assertEqual(stored, {"198.51.100.20", "198.51.100.21"})


def _redis_available() -> bool:
    try:
        import redis

        redis.Redis(host="127.0.0.1", port=6379, socket_timeout=1).ping()
    except Exception:
        return False
    return True


@pytest.mark.skipif(
    not os.environ.get("CI") and not _redis_available(),
    reason="Redis is not running (it must in CI)",
)
class RateLimitAcrossWorkers(FreshRateLimit, TestCase):
    """Two workers are two processes with two cache clients: with Redis as the
    shared cache they must count together."""

    def test_two_cache_clients_share_one_count(self) -> None:
        prefix = f"test-onboarding-{uuid.uuid4().hex}"
        redis_cache = {
            "default": {
                "BACKEND": "django.core.cache.backends.redis.RedisCache",
                "LOCATION": "redis://127.0.0.1:6379/0",
                "KEY_PREFIX": prefix,
            }
        }
        with override_settings(CACHES=redis_cache, ONBOARDING_SUBMISSIONS_PER_HOUR=2):
            try:
                for _ in range(2):
                    response = self.client.post(FORM_URL, form_data())
                    self.assertEqual(response.status_code, 302)
                # A second worker: a fresh connection to the same cache.
                caches["default"].close()
                del caches["default"]
                response = Client().post(FORM_URL, form_data())
                self.assertEqual(response.status_code, 429)
            finally:
                # Only this test's key: clear() would flush the whole database.
                caches["default"].delete(rate_key(RequestFactory().post(FORM_URL)))


class EmailCap(FreshRateLimit, TestCase):
    def test_more_than_5000_emails_are_refused_whole_with_a_clear_message(
        self,
    ) -> None:
        pasted = "\n".join(f"user{n}@st-example.org" for n in range(5001))
        response = self.client.post(FORM_URL, form_data(emails=pasted))
        self.assertEqual(response.status_code, 400)
        self.assertContains(
            response,
            "You pasted 5,001 addresses; one submission takes at most 5,000.",
            status_code=400,
        )
        self.assertEqual(OnboardingRequest.objects.count(), 0)

    def test_exactly_5000_emails_are_accepted(self) -> None:
        pasted = "\n".join(f"user{n}@st-example.org" for n in range(5000))
        response = self.client.post(FORM_URL, form_data(emails=pasted))
        self.assertEqual(response.status_code, 302)
        self.assertEqual(len(OnboardingRequest.objects.get().emails_to_add), 5000)


class BodySizeCap(FreshRateLimit, TestCase):
    def test_an_oversized_body_gets_413_with_a_message_and_writes_nothing(
        self,
    ) -> None:
        pasted = "x" * (MAX_BODY_BYTES + 1)
        response = self.client.post(FORM_URL, form_data(emails=pasted))
        self.assertEqual(response.status_code, 413)
        self.assertContains(response, "this form accepts at most", status_code=413)
        self.assertIn("Content-Security-Policy", response)
        self.assertEqual(OnboardingRequest.objects.count(), 0)

    def test_the_cap_holds_under_csrf_checks_too(self) -> None:
        # The CSRF middleware would read the body first: the cap must come
        # before it, not in the view.
        client = Client(enforce_csrf_checks=True)
        response = client.post(FORM_URL, form_data(emails="x" * (MAX_BODY_BYTES + 1)))
        self.assertEqual(response.status_code, 413)
