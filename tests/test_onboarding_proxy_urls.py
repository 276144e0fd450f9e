"""Issue 19 item 9: the contact gives the reverse proxy's URLs on the status
page before review (one review, not two), the mails say what is true, and
the confirmation mail carries a status link that shows nothing typed to an
address nobody confirmed yet."""

from __future__ import annotations

import re
from typing import Any
from unittest import mock

from django.contrib.auth import get_user_model
from django.core import mail
from django.test import Client, TestCase, override_settings

from integrations.connectivity import probe, runs
from integrations.models import (
    CheckOutcome,
    ConnectivityCheck,
    DicomWebServer,
    OnboardingRequest,
)
from integrations.onboarding import abuse, approve_request, lifecycle
from integrations.onboarding.links import mailed_status_link, status_link
from tests.factories import (
    make_institution,
    make_server,
    submitted_request,
    update_request_for,
)
from tests.onboarding_helpers import (
    FORM_URL,
    FreshRateLimit,
    confirmation_mails,
    confirmation_path,
    form_data,
)

ARCHIVE = "https://pacs.st-example.org/dicomweb"
PROXY = "https://pacs-proxy.st-example.org/dicomweb"
ORIGIN = "https://registry.example:8443"


def proxy_data(qido: str = PROXY, **overrides: str) -> dict[str, str]:
    return {"proxy-qido_url": qido, "proxy-wado_same": "on", **overrides}


def unreachable(*args: Any, **kwargs: Any) -> probe.ProbeResult:
    found = probe.ProbeResult(origin="https://pacsbin.com")
    found.add("unreachable", "No answer.", CheckOutcome.UNREACHABLE)
    return found


class GivingTheProxysUrls(FreshRateLimit, TestCase):
    def setUp(self) -> None:
        super().setUp()
        self.r = submitted_request()
        self.link = status_link(self.r)
        self.url = f"/onboarding/status/{self.link}/proxy-urls"
        patcher = mock.patch.object(runs, "probe_server", side_effect=unreachable)
        self.probed = patcher.start()
        self.addCleanup(patcher.stop)

    def post(self, data: dict[str, str], url: str = "") -> Any:
        return self.client.post(url or self.url, data)

    def assert_unchanged(self) -> None:
        self.r.refresh_from_db()
        self.assertEqual(self.r.qido_url, ARCHIVE)
        self.assertEqual(self.r.archive_qido_url, "")
        self.assertIsNone(self.r.proxy_urls_given_at)
        self.assertFalse(self.r.connectivity_checks.exists())

    def test_the_status_page_offers_the_form_before_review(self) -> None:
        response = self.client.get(f"/onboarding/status/{self.link}/")
        self.assertContains(response, 'id="proxy-urls"')
        self.assertContains(response, 'name="proxy-qido_url"')
        self.assertContains(response, "give us the proxy's URLs in")

    def test_good_urls_replace_the_requests_and_keep_the_archives(self) -> None:
        response = self.post(
            proxy_data(
                "HTTPS://Pacs-Proxy.st-example.org/dicomweb/",
                **{"proxy-wado_same": "", "proxy-wado_url": PROXY + "/wado"},
            )
        )
        self.assertRedirects(
            response,
            f"/onboarding/status/{self.link}/#proxy-urls",
            fetch_redirect_response=False,
        )
        self.r.refresh_from_db()
        self.assertEqual(self.r.qido_url, PROXY)  # normalised
        self.assertEqual(self.r.wado_url, PROXY + "/wado")
        self.assertEqual(self.r.archive_qido_url, ARCHIVE)
        self.assertEqual(self.r.archive_wado_url, ARCHIVE)
        self.assertEqual(self.r.cors_mode, DicomWebServer.CorsMode.REVERSE_PROXY)
        self.assertIsNotNone(self.r.proxy_urls_given_at)
        # The registry checked the new URLs at once, recorded on the request.
        (check,) = self.r.connectivity_checks.all()
        self.assertEqual(check.source, ConnectivityCheck.Source.SERVER)
        self.assertEqual(check.outcome, CheckOutcome.UNREACHABLE)
        self.assertIsNone(check.server)
        (described, _origin), _ = self.probed.call_args
        self.assertEqual(described.qido_url, PROXY)

    def test_the_page_shows_both_and_configurations_still_forward_to_the_archive(
        self,
    ) -> None:
        self.post(proxy_data())
        html = self.client.get(f"/onboarding/status/{self.link}/").content.decode()
        given = re.search(r'<p id="proxy-urls-given">(.*?)</p>', html, re.S)
        assert given is not None
        self.assertIn(PROXY, given.group(1))
        self.assertIn(ARCHIVE, given.group(1))
        self.assertIn(f'proxy_pass "{ARCHIVE}/";', html.replace("&quot;", '"'))
        self.assertIn(f'data-qido-url="{PROXY}"', html)  # the browser checks the proxy

    def test_giving_them_again_keeps_the_archives_first_urls(self) -> None:
        self.post(proxy_data())
        self.post(proxy_data(PROXY + "2"))
        self.r.refresh_from_db()
        self.assertEqual(self.r.qido_url, PROXY + "2")
        self.assertEqual(self.r.archive_qido_url, ARCHIVE)

    def test_a_bad_url_is_a_400_naming_it_and_writes_nothing(self) -> None:
        response = self.post(proxy_data("https://proxy.example/dicom web{x}"))
        self.assertContains(response, "dicom web{x}", status_code=400)
        self.assertContains(response, 'id="id_proxy-qido_url_error"', status_code=400)
        self.assert_unchanged()
        self.probed.assert_not_called()

    def test_an_empty_or_private_form_says_what_is_missing(self) -> None:
        response = self.post({"proxy-qido_url": " "})
        self.assertContains(response, "Enter your proxy", status_code=400)
        self.assert_unchanged()

    def test_without_the_status_links_secret_it_is_a_404(self) -> None:
        for link in (
            self.r.token,  # the token alone
            self.link[:-2] + "xx",  # tampered
            mailed_status_link(self.r),  # the mailed link, another salt
        ):
            with self.subTest(link=link):
                url = f"/onboarding/status/{link}/proxy-urls"
                self.assertEqual(self.post(proxy_data(), url).status_code, 404)
        self.assert_unchanged()

    def test_it_needs_the_csrf_token(self) -> None:
        client = Client(enforce_csrf_checks=True)
        self.assertEqual(client.post(self.url, proxy_data()).status_code, 403)
        self.assert_unchanged()

    def test_a_get_changes_nothing(self) -> None:
        self.assertEqual(self.client.get(self.url, proxy_data()).status_code, 405)
        self.assert_unchanged()

    def test_one_network_is_limited_per_hour(self) -> None:
        for _ in range(abuse.PROXY_URL_CHANGES_PER_HOUR):
            self.assertEqual(self.post(proxy_data()).status_code, 302)
        ConnectivityCheck.objects.all().delete()
        response = self.post(proxy_data(PROXY + "/late"))
        self.assertContains(response, "Too many changes of URLs", status_code=429)
        self.r.refresh_from_db()
        self.assertEqual(self.r.qido_url, PROXY)
        self.assertFalse(ConnectivityCheck.objects.exists())

    def test_approval_activates_the_proxys_urls(self) -> None:
        self.post(proxy_data())
        staff = get_user_model().objects.create_superuser("boss", "b@x.example", "pw")
        result = approve_request(OnboardingRequest.objects.get(), staff)
        server = result.server
        self.assertEqual(server.status, DicomWebServer.Status.ACTIVE)
        self.assertEqual((server.qido_url, server.wado_url), (PROXY, PROXY))
        self.assertEqual(server.cors_mode, DicomWebServer.CorsMode.REVERSE_PROXY)
        self.assertIn(ARCHIVE, server.notes)
        # The check of the proxy's URLs joins the server's history.
        self.assertEqual(server.connectivity_checks.count(), 1)
        # Once reviewed, the form is gone and a post is refused.
        html = self.client.get(f"/onboarding/status/{self.link}/").content.decode()
        self.assertNotIn('name="proxy-qido_url"', html)
        response = self.post(proxy_data(PROXY + "/other"))
        self.assertContains(response, "Send a change", status_code=409)
        server.refresh_from_db()
        self.assertEqual(server.qido_url, PROXY)

    def test_the_review_page_shows_the_proxy_and_the_archive(self) -> None:
        self.post(proxy_data())
        staff = get_user_model().objects.create_superuser("boss", "b@x.example", "pw")
        self.client.force_login(staff)
        html = self.client.get(
            f"/admin/integrations/onboardingrequest/{self.r.pk}/change/"
        ).content.decode()
        row = re.search(r'<tr id="review-proxy-urls">(.*?)</tr>', html, re.S)
        assert row is not None
        self.assertIn(ARCHIVE, row.group(1))
        self.assertIn(f"<code>{PROXY}</code>", html)

    def test_a_request_behind_pacsbins_proxy_or_a_change_takes_none(self) -> None:
        server = make_server(make_institution(contact_email="it@st-example.org"))
        change = update_request_for(server)
        self.assertTrue(lifecycle.proxy_urls_refusal(change))
        link = status_link(change)
        response = self.post(proxy_data(), f"/onboarding/status/{link}/proxy-urls")
        self.assertEqual(response.status_code, 409)
        change.refresh_from_db()
        self.assertEqual(change.qido_url, server.qido_url)


class TheSsrfGuardChecksTheProxy(FreshRateLimit, TestCase):
    @override_settings(CONNECTIVITY_ALLOW_PRIVATE=False)
    def test_a_loopback_proxy_is_taken_with_the_warning_and_never_fetched(
        self,
    ) -> None:
        r = submitted_request()
        link = status_link(r)
        response = self.client.post(
            f"/onboarding/status/{link}/proxy-urls",
            proxy_data("http://127.0.0.1:8042/dicom-web"),
            follow=True,
        )
        self.assertContains(response, "only be reached from inside your")
        (check,) = r.connectivity_checks.all()
        self.assertEqual(check.outcome, CheckOutcome.BLOCKED)


@override_settings(REGISTRY_PUBLIC_ORIGIN=ORIGIN)
class TheConfirmationMailsStatusLink(FreshRateLimit, TestCase):
    def submit(self, **typed: str) -> tuple[OnboardingRequest, str]:
        with self.captureOnCommitCallbacks(execute=True):
            self.client.post(FORM_URL, form_data(**typed), HTTP_HOST="localhost:1")
        (message,) = confirmation_mails()
        found = re.findall(r"https?://\S+/onboarding/mine/\S+/", message.body)
        self.assertEqual(len(found), 1, message.body)
        return OnboardingRequest.objects.get(), found[0]

    def test_it_is_on_the_public_origin_with_its_port(self) -> None:
        r, url = self.submit()
        self.assertEqual(url, f"{ORIGIN}/onboarding/mine/{mailed_status_link(r)}/")

    def test_before_confirmation_it_shows_nothing_typed(self) -> None:
        r, url = self.submit(
            institution_name="Totally Legit Bank",
            notes="Call +1 555 0100 now",
            server_name="Click here http://evil.example",
        )
        (message,) = mail.outbox
        for typed in ("Legit Bank", "555", "evil.example", "pacs.st-example.org"):
            self.assertNotIn(typed, message.body)
        path = url.removeprefix(ORIGIN)
        response = self.client.get(path)
        self.assertContains(response, r.reference)
        self.assertContains(response, 'id="mailed-status-waiting"')
        for typed in ("Legit Bank", "555", "evil.example", "pacs.st-example.org"):
            self.assertNotContains(response, typed)
        self.assertNotContains(response, status_link(r))

    def test_after_confirmation_it_opens_the_status_page(self) -> None:
        r, url = self.submit()
        self.client.post(confirmation_path())
        response = self.client.get(url.removeprefix(ORIGIN))
        self.assertRedirects(response, f"/onboarding/status/{status_link(r)}/")

    def test_a_tampered_or_status_link_is_a_plain_404(self) -> None:
        r, url = self.submit()
        for link in (mailed_status_link(r)[:-2] + "xx", status_link(r), r.token):
            with self.subTest(link=link):
                response = self.client.get(f"/onboarding/mine/{link}/")
                self.assertEqual(response.status_code, 404)


@override_settings(REGISTRY_PUBLIC_ORIGIN=ORIGIN)
class TheDecisionMailSaysTheServersStatus(TestCase):
    @classmethod
    def setUpTestData(cls) -> None:
        cls.staff = get_user_model().objects.create_superuser(
            "boss", "boss@pacsbin.example", "pw"
        )

    def decide(self, r: OnboardingRequest, **kwargs: Any) -> str:
        with self.captureOnCommitCallbacks(execute=True):
            approve_request(r, self.staff, site_url=ORIGIN, **kwargs)
        (message,) = [m for m in mail.outbox if "approved" in m.subject]
        return message.body

    def test_an_active_server_is_in_the_uploader_now(self) -> None:
        body = self.decide(submitted_request(), activate=True)
        self.assertIn("Main PACS is active: your approved users see it", body)
        self.assertNotIn("once it is active", body)
        self.assertNotIn("pending", body)

    def test_a_pending_server_is_not_switched_on_yet(self) -> None:
        body = self.decide(submitted_request(), activate=False)
        self.assertIn("not switched on yet (pending)", body)
        self.assertNotIn("is active", body)

    def test_a_change_to_an_active_server_applies_now(self) -> None:
        server = make_server(make_institution(contact_email="it@st-example.org"))
        body = self.decide(update_request_for(server, emails_to_add=["x@y.example"]))
        self.assertIn("is active, and the change applies now", body)

    def test_a_change_to_a_suspended_server_says_so(self) -> None:
        server = make_server(
            make_institution(contact_email="it@st-example.org"),
            status=DicomWebServer.Status.SUSPENDED,
        )
        body = self.decide(update_request_for(server, emails_to_add=["x@y.example"]))
        self.assertIn("is suspended", body)
        self.assertNotIn("is active", body)
