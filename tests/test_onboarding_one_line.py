"""Contact names stay on one line, and no stored value, however it got there,
forges a header or a line in the emails the registry sends."""

from __future__ import annotations

import io
import json

from django.contrib.auth import get_user_model
from django.core import mail
from django.core.exceptions import ValidationError
from django.test import TestCase, override_settings

from integrations import transfer
from integrations.models import DicomWebServer, Institution, OnboardingRequest
from integrations.onboarding import ReviewError, approve_request, reject_request
from integrations.validators import one_line, validate_single_line
from tests.api_helpers import (
    key_header,
)
from tests.factories import (
    api_key,
    confirm,
    submitted_request,
)
from tests.onboarding_helpers import (
    FORM_URL,
    FreshRateLimit,
    form_data,
)

FORGED = "Pat Admin\r\nBcc: victim@elsewhere.example\r\n\r\nClick http://evil.example"
LINE_BREAKERS = {
    "\r\n": "a carriage return (U+000D), a line break (U+000A)",
    "\n": "a line break (U+000A)",
    "\u2028": "a line separator (U+2028)",
    "\u2029": "a paragraph separator (U+2029)",
    "\x85": "a next-line character (U+0085)",
    "\t": "a tab (U+0009)",
    "\x1b": "a control character (U+001B)",
}


class TheForm(FreshRateLimit, TestCase):
    def test_a_name_with_a_line_break_is_refused_naming_the_character(self) -> None:
        for char, named in LINE_BREAKERS.items():
            with self.subTest(char=repr(char)):
                response = self.client.post(
                    FORM_URL, form_data(contact_name=f"Pat{char}Bcc: x@y.example")
                )
                self.assertEqual(response.status_code, 400)
                self.assertContains(
                    response,
                    f"This must fit on one line; it contains {named}.",
                    2,
                    status_code=400,
                )
                self.assertEqual(OnboardingRequest.objects.count(), 0)
                self.assertEqual(mail.outbox, [])

    def test_an_ordinary_name_with_accents_and_apostrophes_is_kept(self) -> None:
        self.client.post(FORM_URL, form_data(contact_name="  Zoë O'Brien-Núñez  "))
        self.assertEqual(
            OnboardingRequest.objects.get().contact_name, "Zoë O'Brien-Núñez"
        )


class OtherWaysIn(TestCase):
    def test_the_model_refuses_it_for_the_admin_and_the_importers(self) -> None:
        institution = Institution(name="Clinic", contact_name="Pat\u2028Admin")
        with self.assertRaisesMessage(ValidationError, "a line separator (U+2028)"):
            institution.full_clean()

    def test_the_admin_form_refuses_it(self) -> None:
        staff = get_user_model().objects.create_superuser("boss", "b@p.example", "pw")
        self.client.force_login(staff)
        response = self.client.post(
            "/admin/integrations/institution/add/",
            {"name": "Clinic", "contact_name": "Pat\r\nAdmin", "contact_email": ""},
        )
        self.assertContains(response, "it contains a carriage return (U+000D)")
        self.assertEqual(Institution.objects.count(), 0)

    def test_the_management_api_refuses_it(self) -> None:
        _, raw = api_key("importer", "manage")
        response = self.client.post(
            "/api/v1/institutions/",
            {"name": "Clinic", "contact_name": "Pat\nAdmin"},
            content_type="application/json",
            **key_header(raw),
        )
        self.assertEqual(response.status_code, 400)
        self.assertIn("a line break (U+000A)", response.json()["contact_name"][0])
        self.assertEqual(Institution.objects.count(), 0)

    def test_the_json_importer_refuses_it_and_writes_nothing(self) -> None:
        document = {
            "format": transfer.FORMAT,
            "version": transfer.VERSION,
            "institutions": [
                {
                    "id": 1,
                    "name": "Clinic",
                    "contact_name": "Pat\nA",
                    "contact_email": "",
                    "notes": "",
                    "created_at": "2026-01-01T00:00:00+00:00",
                    "updated_at": "2026-01-01T00:00:00+00:00",
                }
            ],
            "servers": [],
            "approved_users": [],
        }
        with self.assertRaisesMessage(
            transfer.TransferError, "institutions #1: This must fit on one line"
        ):
            transfer.import_json(io.StringIO(json.dumps(document)))
        self.assertEqual(Institution.objects.count(), 0)


class TheHelpers(TestCase):
    def test_one_line_turns_every_line_breaker_into_one_space(self) -> None:
        self.assertEqual(
            one_line("a\r\nb\u2028c\u2029d\x85e\x00f\tg   h"), "a b c d e f g h"
        )

    def test_validate_single_line_accepts_right_to_left_marks(self) -> None:
        validate_single_line("\u200fمحمد\u200e Pat")


@override_settings(ONBOARDING_NOTIFY_EMAILS=["queue@pacsbin.example"])
class StoredRowsWithLineBreaks(TestCase):
    """A row written past every form (here with QuerySet.update) still cannot
    add a header or a line to any email."""

    @classmethod
    def setUpTestData(cls) -> None:
        cls.reviewer = get_user_model().objects.create_superuser(
            "rev", "rev@pacsbin.example", "pw"
        )

    def forged_request(self, confirmed: bool = False) -> OnboardingRequest:
        r = submitted_request(confirmed=False)
        OnboardingRequest.objects.filter(pk=r.pk).update(
            contact_name=FORGED,
            institution_name="Clinic\r\nBcc: victim@elsewhere.example",
            server_name="PACS\u2028Reply-To: evil@evil.example",
        )
        r.refresh_from_db()
        if confirmed:
            with self.captureOnCommitCallbacks(execute=True):
                confirm(r)
            r.refresh_from_db()
        return r

    def assert_nothing_forged(self, message: mail.EmailMessage) -> None:
        raw = message.message().as_string()
        headers = raw.split("\n\n", 1)[0]
        self.assertNotIn("victim@elsewhere.example", headers.split("Subject:")[0])
        self.assertNotRegex(raw, r"(?m)^(Bcc|Reply-To|Click):?")
        self.assertNotIn("\r", message.subject + message.body)
        self.assertNotIn("\u2028", message.subject + message.body)
        self.assertNotIn("\n", message.subject)
        self.assertEqual(message.bcc, [])
        self.assertEqual(message.recipients(), message.to)

    def test_the_confirmation_email_leaves_the_name_out(self) -> None:
        """It goes to an address nobody confirmed yet: no typed text at all."""
        r = submitted_request(confirmed=False)
        OnboardingRequest.objects.filter(pk=r.pk).update(contact_name=FORGED)
        r.refresh_from_db()
        mail.outbox.clear()
        from integrations.onboarding import notify

        notify.confirmation_requested(r, "http://testserver")
        (message,) = mail.outbox
        self.assert_nothing_forged(message)
        self.assertNotIn("victim@elsewhere.example", message.body)
        self.assertNotIn("evil.example", message.body)
        self.assertIn("Hello,\n", message.body)

    def test_the_staff_notification_is_sent_with_every_value_on_one_line(
        self,
    ) -> None:
        self.forged_request(confirmed=True)
        (message,) = [m for m in mail.outbox if m.to == ["queue@pacsbin.example"]]
        self.assert_nothing_forged(message)
        self.assertIn("waiting for review: Clinic Bcc: victim", message.subject)
        self.assertIn("Server: PACS Reply-To: evil@evil.example\n", message.body)

    def test_the_rejection_email_is_sent_with_every_value_on_one_line(self) -> None:
        r = self.forged_request(confirmed=True)
        mail.outbox.clear()
        with self.captureOnCommitCallbacks(execute=True):
            reject_request(r, self.reviewer, "Wrong URL.\r\nBcc: x@y.example\u2028ok")
        (message,) = mail.outbox
        self.assertEqual(message.to, ["pat.admin@st-example.org"])
        self.assert_nothing_forged(message)
        self.assertIn("Hello Pat Admin Bcc: victim", message.body)
        self.assertIn("  Wrong URL.\n  Bcc: x@y.example\n  ok\n", message.body)

    def test_the_approval_email_is_sent_with_every_value_on_one_line(self) -> None:
        r = self.forged_request(confirmed=True)
        OnboardingRequest.objects.filter(pk=r.pk).update(contact_name="Pat Admin")
        r.refresh_from_db()
        mail.outbox.clear()
        with self.captureOnCommitCallbacks(execute=True):
            approve_request(r, self.reviewer)
        (message,) = mail.outbox
        self.assert_nothing_forged(message)
        self.assertIn("(PACS Reply-To: evil@evil.example, Clinic Bcc:", message.body)

    def test_approval_refuses_a_stored_multi_line_name_instead_of_copying_it(
        self,
    ) -> None:
        r = self.forged_request(confirmed=True)
        with self.assertRaisesMessage(ReviewError, "must fit on one line"):
            approve_request(r, self.reviewer)
        self.assertEqual(Institution.objects.count(), 0)
        self.assertEqual(DicomWebServer.objects.count(), 0)
