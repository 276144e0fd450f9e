"""The public form at /onboarding/: what it stores, what it refuses, and how
it tells the person filling it in."""

from __future__ import annotations

import re

from django.contrib.auth import get_user_model
from django.core import mail
from django.test import TestCase, override_settings

from integrations.models import (
    ApprovedUser,
    DicomWebServer,
    Institution,
    OnboardingRequest,
)
from tests.onboarding_helpers import (
    FORM_URL,
    FreshRateLimit,
    confirmation_path,
    form_data,
)


class TheEmptyForm(FreshRateLimit, TestCase):
    def test_it_explains_each_field_and_has_wado_same_ticked(self) -> None:
        response = self.client.get(FORM_URL)
        self.assertEqual(response.status_code, 200)
        html = response.content.decode()
        for label in ("Institution", "Your email", "QIDO-RS URL", "WADO-RS URL"):
            self.assertIn(label, html)
        self.assertRegex(html, r'<input[^>]*name="wado_same"[^>]*checked')
        self.assertIn('aria-describedby="id_qido_url_helptext"', html)
        self.assertIn("/static/onboarding/onboarding.js", html)
        self.assertNotRegex(html, r"<script>(?!</script>)|<script(?![^>]*src=)")
        self.assertNotIn("style=", html)

    def test_it_carries_a_content_security_policy_without_inline_script(self) -> None:
        response = self.client.get(FORM_URL)
        policy = response["Content-Security-Policy"]
        self.assertIn("script-src 'self'", policy)
        self.assertNotIn("unsafe-inline", policy)
        self.assertIn("frame-ancestors 'none'", policy)

    def test_the_admin_gets_no_public_page_policy(self) -> None:
        response = self.client.get("/admin/login/")
        self.assertNotIn("Content-Security-Policy", response)


@override_settings(ONBOARDING_NOTIFY_EMAILS=[])
class ASubmission(FreshRateLimit, TestCase):
    @classmethod
    def setUpTestData(cls) -> None:
        User = get_user_model()
        User.objects.create_user("rev", "reviewer@pacsbin.example", "x", is_staff=True)
        User.objects.create_user(
            "old", "gone@pacsbin.example", "x", is_staff=True, is_active=False
        )
        User.objects.create_user("user", "user@pacsbin.example", "x")

    def test_it_stores_normalised_values_and_redirects_to_the_confirmation(
        self,
    ) -> None:
        with self.captureOnCommitCallbacks(execute=True):
            response = self.client.post(
                FORM_URL, form_data(), REMOTE_ADDR="198.51.100.7"
            )
        self.assertEqual(response.status_code, 302)
        self.assertRegex(response["Location"], r"^/onboarding/submitted/[^/]+/$")
        r = OnboardingRequest.objects.get()
        self.assertEqual(r.kind, "new")
        self.assertEqual(r.status, "submitted")
        self.assertRegex(r.reference, r"^OB-[2-9A-HJ-KM-NP-Z]{7}$")
        self.assertEqual(r.contact_email, "Pat.Admin@st-example.org")
        self.assertEqual(r.qido_url, "https://pacs.st-example.org/dicomweb")
        self.assertEqual(r.wado_url, r.qido_url)
        self.assertEqual(r.emails_to_add, ["Ann@st-example.org", "bob@st-example.org"])
        self.assertEqual(r.client_address, "198.51.100.7")
        self.assertGreaterEqual(len(r.token), 32)

    def test_nothing_reaches_the_registry_before_review(self) -> None:
        self.client.post(FORM_URL, form_data())
        self.assertEqual(Institution.objects.count(), 0)
        self.assertEqual(DicomWebServer.objects.count(), 0)
        self.assertEqual(ApprovedUser.objects.count(), 0)

    def submit_and_confirm(self) -> None:
        with self.captureOnCommitCallbacks(execute=True):
            self.client.post(FORM_URL, form_data())
        path = confirmation_path()
        with self.captureOnCommitCallbacks(execute=True):
            self.client.post(path)

    def test_active_staff_with_an_email_are_told_once_it_is_confirmed(self) -> None:
        self.submit_and_confirm()
        self.assertEqual(len(mail.outbox), 2)
        message = mail.outbox[1]
        self.assertEqual(message.to, ["reviewer@pacsbin.example"])
        r = OnboardingRequest.objects.get()
        self.assertIn(r.reference, message.subject)
        self.assertIn(
            f"/admin/integrations/onboardingrequest/{r.pk}/change/", message.body
        )

    def test_with_nobody_to_tell_a_warning_is_logged(self) -> None:
        get_user_model().objects.filter(is_staff=True).update(email="")
        with self.assertLogs("integrations.onboarding.notify", "WARNING") as logs:
            self.submit_and_confirm()
        self.assertIn("ONBOARDING_NOTIFY_EMAILS", logs.output[0])
        self.assertEqual(len(mail.outbox), 1)  # the confirmation link alone

    @override_settings(ONBOARDING_NOTIFY_EMAILS=["queue@pacsbin.example"])
    def test_the_configured_addresses_are_told_instead(self) -> None:
        self.submit_and_confirm()
        self.assertEqual(mail.outbox[-1].to, ["queue@pacsbin.example"])

    @override_settings(EMAIL_BACKEND="tests.test_onboarding_form.BrokenBackend")
    def test_a_mail_server_that_is_down_does_not_lose_the_submission(self) -> None:
        with (
            self.assertLogs("integrations.onboarding.notify", "ERROR"),
            self.captureOnCommitCallbacks(execute=True),
        ):
            response = self.client.post(FORM_URL, form_data())
        self.assertEqual(response.status_code, 302)
        self.assertEqual(OnboardingRequest.objects.count(), 1)

    def test_a_separate_wado_url_is_validated_and_kept(self) -> None:
        self.client.post(
            FORM_URL,
            form_data(wado_same=None, wado_url="https://pacs.st-example.org/wado/"),
        )
        r = OnboardingRequest.objects.get()
        self.assertEqual(r.wado_url, "https://pacs.st-example.org/wado")

    def test_unsure_about_cors_is_stored_as_a_note_for_the_reviewer(self) -> None:
        self.client.post(FORM_URL, form_data(cors_mode="unsure", notes="Call me."))
        r = OnboardingRequest.objects.get()
        self.assertEqual(r.cors_mode, "direct")
        self.assertIn("unsure how CORS is met", r.notes)
        self.assertIn("Call me.", r.notes)


class BadInput(FreshRateLimit, TestCase):
    def post(self, **overrides: str | None):
        response = self.client.post(FORM_URL, form_data(**overrides))
        self.assertEqual(response.status_code, 400)
        self.assertEqual(OnboardingRequest.objects.count(), 0)
        return response.content.decode()

    def test_bad_emails_are_listed_by_line_with_their_value_and_the_text_is_kept(
        self,
    ) -> None:
        pasted = "ann@st-example.org\nnot-an-email\n\nbob@st-example.org, carol@\n"
        html = self.post(emails=pasted)
        self.assertIn("Line 2: “not-an-email” is not a valid email address", html)
        self.assertIn("Line 4: “carol@” is not a valid email address", html)
        self.assertIn("Please fix 2 problems below", html)
        self.assertIn(
            ">\nann@st-example.org\nnot-an-email\n\n"
            "bob@st-example.org, carol@\n</textarea>",
            html,
        )
        self.assertIn('value="St. Example Hospital"', html)

    def test_errors_are_summarised_at_the_top_with_links_to_the_fields(self) -> None:
        html = self.post(qido_url="ftp://pacs.example.org", contact_email="pat@")
        summary = html[
            html.index('id="error-summary"') : html.index(
                "</div>", html.index('id="error-summary"')
            )
        ]
        self.assertIn('href="#id_qido_url"', summary)
        self.assertIn('href="#id_contact_email"', summary)
        self.assertIn("“ftp://pacs.example.org” is not a usable DICOMweb URL", summary)
        # And beside the field, tied to it for screen readers.
        self.assertIn('id="id_qido_url_error"', html)
        self.assertRegex(html, r'name="qido_url"[^>]*aria-invalid="true"')
        self.assertRegex(
            html, r'aria-describedby="id_qido_url_helptext id_qido_url_error"'
        )

    def test_a_url_with_credentials_is_refused_by_the_shared_validator(self) -> None:
        html = self.post(qido_url="https://user:pw@pacs.example.org/dicomweb")
        self.assertIn("credentials never go in the URL", html)

    def test_unticking_same_as_qido_requires_a_wado_url(self) -> None:
        html = self.post(wado_same=None, wado_url="")
        self.assertIn("Enter the WADO-RS URL", html)

    def test_no_emails_at_all_is_refused(self) -> None:
        html = self.post(emails=" ; ,\n")
        self.assertIn("Paste at least one Pacsbin account email.", html)

    def test_an_unknown_cors_choice_is_refused(self) -> None:
        html = self.post(cors_mode="everything")
        self.assertIn("Select a valid choice", html)


class BrokenBackend:
    def __init__(self, *args: object, **kwargs: object) -> None:
        pass

    def send_messages(self, messages: object) -> int:
        raise ConnectionRefusedError("smtp down")


def test_reference_alphabet_avoids_confusable_characters() -> None:
    from integrations.onboarding.links import _REFERENCE_ALPHABET

    assert not re.search(r"[01ILO]", _REFERENCE_ALPHABET)
