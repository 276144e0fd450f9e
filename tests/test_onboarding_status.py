"""The confirmation page and the private status page behind a signed link."""

from __future__ import annotations

from django.core import signing
from django.test import TestCase, override_settings

from integrations import audit
from integrations.onboarding import approve_request, reject_request
from integrations.onboarding.links import status_link
from tests.factories import (
    submitted_request,
)
from tests.onboarding_helpers import (
    FORM_URL,
    FreshRateLimit,
    form_data,
)


class TheConfirmation(FreshRateLimit, TestCase):
    def test_it_shows_the_reference_and_a_working_status_link(self) -> None:
        response = self.client.post(FORM_URL, form_data(), follow=True)
        self.assertEqual(response.status_code, 200)
        r = response.context["r"]
        self.assertContains(response, r.reference)
        status_url = response.context["status_url"]
        self.assertTrue(status_url.startswith("http://testserver/onboarding/status/"))
        self.assertContains(response, f'href="{status_url}"')
        status_page = self.client.get(status_url)
        self.assertContains(status_page, r.reference)
        self.assertEqual(response["Cache-Control"].count("no-store"), 1)


class TheSignedLink(TestCase):
    @classmethod
    def setUpTestData(cls) -> None:
        cls.r = submitted_request()

    def url(self, link: str) -> str:
        return f"/onboarding/status/{link}/"

    def test_a_valid_link_opens_the_status_page(self) -> None:
        response = self.client.get(self.url(status_link(self.r)))
        self.assertEqual(response.status_code, 200)
        self.assertContains(response, "Waiting for review")
        self.assertIn("no-store", response["Cache-Control"])
        self.assertIn("Content-Security-Policy", response)

    def test_a_tampered_link_is_a_plain_404(self) -> None:
        link = status_link(self.r)
        token, signature = link.rsplit(":", 1)
        for bad in (
            f"{token[:-1]}{'A' if token[-1] != 'A' else 'B'}:{signature}",
            f"{token}:{signature[:-1]}x",
            token,
        ):
            response = self.client.get(self.url(bad))
            self.assertEqual(response.status_code, 404, bad)
            self.assertNotContains(response, self.r.reference, status_code=404)

    def test_an_unknown_but_correctly_signed_token_is_a_plain_404(self) -> None:
        signer = signing.Signer(salt="integrations.onboarding.status-link")
        response = self.client.get(self.url(signer.sign("no-such-token")))
        self.assertEqual(response.status_code, 404)

    def test_the_token_alone_does_not_open_the_page(self) -> None:
        response = self.client.get(self.url(self.r.token))
        self.assertEqual(response.status_code, 404)

    def test_a_link_signed_with_another_secret_is_refused(self) -> None:
        with override_settings(SECRET_KEY="another-deployment-secret-0123456789abcdef"):
            forged = status_link(self.r)
        self.assertEqual(self.client.get(self.url(forged)).status_code, 404)


class WhatTheStatusPageShows(TestCase):
    def page(self, **fields: object) -> str:
        r = submitted_request(**fields)
        response = self.client.get(f"/onboarding/status/{status_link(r)}/")
        self.assertEqual(response.status_code, 200)
        return response.content.decode()

    def test_what_was_submitted(self) -> None:
        html = self.page()
        for text in (
            "St. Example Hospital",
            "Main PACS",
            "https://pacs.st-example.org/dicomweb",
            "ann@st-example.org",
            "A reverse proxy adds CORS headers",
        ):
            self.assertIn(text, html)

    def test_without_credentials_a_wildcard_origin_is_enough(self) -> None:
        html = self.page(needs_credentials=False)
        self.assertIn("Access-Control-Allow-Origin: *", html)
        self.assertIn(
            "Access-Control-Allow-Headers: Authorization, Accept, Content-Type, "
            "Range, If-None-Match",
            html,
        )
        self.assertIn("reverse proxy in front of your archive", html)

    @override_settings(
        UPLOADER_ORIGINS=["https://pacsbin.com", "https://eu.pacsbin.com"]
    )
    def test_with_credentials_the_exact_origins_are_named_and_star_is_ruled_out(
        self,
    ) -> None:
        html = self.page(needs_credentials=True, cors_mode="direct")
        headers = html[html.index('id="cors-headers"') : html.index("</pre>")]
        self.assertNotIn("Access-Control-Allow-Origin: *", headers)
        self.assertIn("Access-Control-Allow-Origin: https://pacsbin.com", headers)
        self.assertIn("Access-Control-Allow-Origin: https://eu.pacsbin.com", headers)
        self.assertIn("Access-Control-Allow-Credentials: true", headers)
        self.assertIn("Vary: Origin", headers)
        self.assertIn("is NOT enough", html)
        self.assertIn("Your archive itself must send these headers.", html)

    def test_with_the_dimse_proxy_the_urls_must_be_the_proxys(self) -> None:
        html = self.page(cors_mode="dimse_proxy")
        self.assertIn("proxyMode", html)
        self.assertIn("must be the proxy&#x27;s", html)

    def test_the_connectivity_block_is_there_for_the_browser_check(self) -> None:
        html = self.page()
        self.assertIn('id="connectivity"', html)

    def test_no_change_can_be_sent_before_approval(self) -> None:
        r = submitted_request()
        link = status_link(r)
        html = self.client.get(f"/onboarding/status/{link}/").content.decode()
        self.assertNotIn("Send a change", html)
        response = self.client.get(f"/onboarding/status/{link}/change/")
        self.assertEqual(response.status_code, 409)

    def test_after_approval_it_says_the_users_see_the_server(self) -> None:
        from django.contrib.auth import get_user_model

        reviewer = get_user_model().objects.create_user("rev", is_staff=True)
        r = submitted_request()
        approve_request(r, reviewer)
        html = self.client.get(f"/onboarding/status/{status_link(r)}/").content.decode()
        self.assertIn("Approved", html)
        self.assertIn("now see <strong>Main PACS</strong>", html)
        self.assertIn("Send a change", html)

    def test_after_rejection_it_shows_the_reason(self) -> None:
        from django.contrib.auth import get_user_model

        reviewer = get_user_model().objects.create_user("rev", is_staff=True)
        r = submitted_request()
        with audit.acting_as(user=reviewer):
            reject_request(r, reviewer, "The QIDO URL is a test <server>.")
        html = self.client.get(f"/onboarding/status/{status_link(r)}/").content.decode()
        self.assertIn("Rejected", html)
        self.assertIn("The QIDO URL is a test &lt;server&gt;.", html)


class NoTemplateCommentLeaks(TestCase):
    def test_the_placeholder_notes_for_developers_stay_out_of_the_page(self) -> None:
        r = submitted_request()
        html = self.client.get(f"/onboarding/status/{status_link(r)}/").content.decode()
        self.assertNotIn("placeholder", html)
        self.assertNotIn("{#", html)
