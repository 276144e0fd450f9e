"""Every link in every email is built on REGISTRY_PUBLIC_ORIGIN, never on the
Host a request came with: ``Host: localhost:1`` passes ALLOWED_HOSTS, and
would otherwise put port 1 into a link mailed to someone else."""

from __future__ import annotations

import re

from django.contrib.auth import get_user_model
from django.core import mail
from django.core.exceptions import ImproperlyConfigured
from django.test import RequestFactory, SimpleTestCase, TestCase, override_settings

from integrations.models import OnboardingRequest, ServerHealth
from integrations.monitoring import alerts
from integrations.monitoring.states import Change
from integrations.publicurls import public_origin, public_url
from tests.factories import make_institution, make_server
from tests.onboarding_helpers import (
    FORM_URL,
    FreshRateLimit,
    confirmation_path,
    form_data,
)

ORIGIN = "https://registry.example"
STAFF = "queue@pacsbin.example"
# Allowed hosts (see pyproject's pytest env) with ports, and another allowed name.
HOSTS = ["localhost:1", "127.0.0.1:8443", "localhost"]
_URL = re.compile(r"https?://[^\s>]+")


def links_in(messages: list[mail.EmailMessage]) -> list[str]:
    found = [url for m in messages for url in _URL.findall(m.body + m.subject)]
    assert found, [m.body for m in messages]
    return found


@override_settings(REGISTRY_PUBLIC_ORIGIN=ORIGIN, ONBOARDING_NOTIFY_EMAILS=[STAFF])
class OnboardingMail(FreshRateLimit, TestCase):
    @classmethod
    def setUpTestData(cls) -> None:
        cls.staff = get_user_model().objects.create_superuser(
            "boss", "boss@pacsbin.example", "pw"
        )

    def assert_from_origin(self) -> None:
        for url in links_in(mail.outbox):
            self.assertTrue(url.startswith(f"{ORIGIN}/"), url)

    def test_submit_confirm_and_decide_under_any_host_mail_origin_links(self) -> None:
        for host in HOSTS:
            with self.subTest(host=host):
                mail.outbox.clear()
                with self.captureOnCommitCallbacks(execute=True):
                    response = self.client.post(
                        FORM_URL,
                        form_data(institution_name=f"Hospital {host}"),
                        HTTP_HOST=host,
                    )
                self.assertEqual(response.status_code, 302)
                path = confirmation_path()
                with self.captureOnCommitCallbacks(execute=True):
                    self.client.post(path, HTTP_HOST=host)
                r = OnboardingRequest.objects.get(institution_name=f"Hospital {host}")
                self.client.force_login(self.staff)
                with self.captureOnCommitCallbacks(execute=True):
                    self.client.post(
                        f"/admin/integrations/onboardingrequest/{r.pk}/approve/",
                        {"activate": "on"},
                        HTTP_HOST=host,
                    )
                self.client.logout()
                r.refresh_from_db()
                self.assertEqual(r.status, "approved")
                # Confirmation to the contact, review link to staff, decision.
                self.assertEqual(len(mail.outbox), 3)
                self.assert_from_origin()


@override_settings(
    REGISTRY_PUBLIC_ORIGIN=ORIGIN,
    MONITOR_ALERT_EMAILS=[STAFF],
    EMAIL_BACKEND="django.core.mail.backends.locmem.EmailBackend",
)
class AlertMail(TestCase):
    def test_the_server_page_link_is_on_the_origin(self) -> None:
        server = make_server(make_institution())
        health, _ = ServerHealth.objects.get_or_create(server=server)
        alerts.queue([Change("failing", health, "ok", "cors_missing", "no header")])
        alerts.flush()
        (url,) = links_in(mail.outbox)[1:]  # after the QIDO URL
        self.assertEqual(
            url, f"{ORIGIN}/admin/integrations/dicomwebserver/{server.pk}/change/"
        )


class TheHelper(SimpleTestCase):
    def request(self, host: str) -> object:
        return RequestFactory().get("/", HTTP_HOST=host)

    @override_settings(REGISTRY_PUBLIC_ORIGIN=ORIGIN, DEBUG=False)
    def test_the_origin_wins_over_the_request(self) -> None:
        request = self.request("localhost:1")
        self.assertEqual(public_url("/x/", request), f"{ORIGIN}/x/")  # type: ignore[arg-type]

    @override_settings(REGISTRY_PUBLIC_ORIGIN="", DEBUG=False)
    def test_with_debug_off_no_origin_is_an_error_naming_it(self) -> None:
        with self.assertRaisesMessage(ImproperlyConfigured, "REGISTRY_PUBLIC_ORIGIN"):
            public_origin(self.request("localhost"))  # type: ignore[arg-type]

    @override_settings(REGISTRY_PUBLIC_ORIGIN="", DEBUG=True)
    def test_only_the_debug_demo_falls_back_to_the_request(self) -> None:
        request = self.request("localhost:8000")
        self.assertEqual(public_origin(request), "http://localhost:8000")  # type: ignore[arg-type]
