"""A change is confirmed knowingly, and a new contact address by itself.

The page behind the link mailed to the address on record lists the change
(fields old → new, emails added and removed) before its button; the contact
address typed into a change gets a link of its own once the change is
confirmed, counts as confirmed only after pressing that link's button, and
becomes the institution's contact only then (and after approval), when the
old contact is told. Mail to an address not yet confirmed carries nothing the
submitter typed."""

from __future__ import annotations

import re
from datetime import timedelta
from urllib.parse import urlsplit

from django.contrib.auth import get_user_model
from django.core import mail
from django.test import TestCase, override_settings
from django.utils import timezone

from integrations.models import (
    DicomWebServer,
    Institution,
    OnboardingRequest,
    ServerHealth,
)
from integrations.monitoring import alerts
from integrations.onboarding import approve_request, lifecycle
from integrations.onboarding.links import (
    confirmation_link,
    new_contact_link,
    status_link,
)
from tests.factories import approve, submitted_request
from tests.onboarding_helpers import FreshRateLimit, confirmation_path

STAFF = "queue@pacsbin.example"
RECORD = "pat.admin@st-example.org"
NEW = "mallory@attacker.example"
_CONTACT_URL = re.compile(r"https?://\S+/onboarding/confirm-contact/\S+/")
# What the change's submitter types: none of it may reach an unconfirmed
# address by mail.
TYPED = ("Mallory", "evil.example", "prize", "Totally", "carol@", "Main PACS")


def contact_path(message: mail.EmailMessage) -> str:
    (url,) = _CONTACT_URL.findall(message.body)
    return urlsplit(url).path


@override_settings(ONBOARDING_NOTIFY_EMAILS=[STAFF])
class ChangeTestCase(FreshRateLimit, TestCase):
    @classmethod
    def setUpTestData(cls) -> None:
        cls.staff = get_user_model().objects.create_superuser(
            "boss", "boss@pacsbin.example", "pw"
        )
        cls.origin = submitted_request()
        cls.server = approve_request(cls.origin, cls.staff).server
        approve(cls.server, "dave@st-example.org")

    def post_change(self, **overrides: str) -> OnboardingRequest:
        data = {
            "contact_name": "Mallory, prize at www.prize.example",
            "contact_email": NEW,
            "server_name": "Main PACS Totally New",
            "qido_url": "https://evil.example/dicomweb",
            "wado_same": "on",
            "cors_mode": "direct",
            "emails_to_add": "carol@st-example.org\nann@st-example.org",
            "emails_to_remove": "dave@st-example.org",
            "notes": "Totally legit",
            "leave_blank": "",
            **overrides,
        }
        with self.captureOnCommitCallbacks(execute=True):
            response = self.client.post(
                f"/onboarding/status/{status_link(self.origin)}/change/",
                data,
                follow=True,
            )
        self.assertContains(response, "Check your mailbox")
        return OnboardingRequest.objects.get(kind="update")

    def press(self, path: str) -> None:
        with self.captureOnCommitCallbacks(execute=True):
            response = self.client.post(path)
        self.assertEqual(response.status_code, 200)

    def assert_no_typed_text(self, message: mail.EmailMessage) -> None:
        for typed in TYPED:
            self.assertNotIn(typed, message.body)
            self.assertNotIn(typed, message.subject)


class TheRecordConfirmsKnowingly(ChangeTestCase):
    def test_the_page_lists_the_change_before_the_button(self) -> None:
        r = self.post_change()
        response = self.client.get(confirmation_path())
        content = response.content.decode()
        self.assertContains(response, 'id="confirm-button"')
        self.assertLess(content.index('id="change"'), content.index("confirm-button"))
        # Each changed field, as it is and as it would be.
        for old, new in (
            ("https://pacs.st-example.org/dicomweb", "https://evil.example/dicomweb"),
            ("Main PACS", "Main PACS Totally New"),
            ("Pat Admin", "Mallory, prize at www.prize.example"),
            (RECORD, NEW),
        ):
            self.assertContains(response, old)
            self.assertContains(response, new)
        self.assertContains(response, "QIDO URL")
        self.assertContains(response, "Contact email")
        # Emails really added (ann is approved already) and really removed.
        added = content[content.index('id="emails-added"') :]
        self.assertIn("carol@st-example.org", added[: added.index("</ul>")])
        self.assertNotIn("ann@st-example.org", added[: added.index("</ul>")])
        removed = content[content.index('id="emails-removed"') :]
        self.assertIn("dave@st-example.org", removed[: removed.index("</ul>")])
        self.assertContains(response, "a link of its own")
        # Opening it changes nothing.
        r.refresh_from_db()
        self.assertIsNone(r.address_confirmed_at)
        self.assertEqual(len(mail.outbox), 1)

    def test_the_mail_says_what_changes_in_our_words_only(self) -> None:
        self.post_change()
        (message,) = mail.outbox
        self.assertEqual(message.to, [RECORD])
        self.assertIn(
            "What it does: it changes Contact name, Contact email", message.body
        )
        self.assertIn("QIDO URL", message.body)
        self.assertIn(
            "approves 1 new email(s); removes 1 approved email(s)", message.body
        )
        self.assertIn("new contact address", message.body)
        self.assert_no_typed_text(message)
        self.assertNotIn(NEW, message.body)

    def test_a_change_that_keeps_the_contact_needs_no_second_link(self) -> None:
        r = self.post_change(contact_name="Pat Admin", contact_email=RECORD)
        self.assertEqual(r.new_contact_address, "")
        self.press(confirmation_path())
        r.refresh_from_db()
        self.assertIsNotNone(r.confirmed_at)
        self.assertEqual([m.to for m in mail.outbox[1:]], [[STAFF]])


class TheNewContactConfirmsItself(ChangeTestCase):
    def test_it_is_mailed_only_once_the_record_confirmed(self) -> None:
        r = self.post_change()
        self.assertEqual(r.new_contact_address, NEW)
        self.assertEqual([m.to for m in mail.outbox], [[RECORD]])
        self.press(confirmation_path())
        r.refresh_from_db()
        self.assertIsNotNone(r.address_confirmed_at)
        self.assertIsNone(r.confirmed_at)
        self.assertEqual(list(OnboardingRequest.objects.review_queue()), [])
        (message,) = mail.outbox[1:]  # no staff mail yet
        self.assertEqual(message.to, [NEW])
        self.assertEqual(
            message.subject,
            f"Confirm your address for Pacsbin integration request {r.reference}",
        )
        self.assert_no_typed_text(message)
        self.assertNotIn("St. Example", message.body)

    def test_the_status_and_review_pages_say_whom_it_waits_for(self) -> None:
        r = self.post_change()
        self.press(confirmation_path())
        response = self.client.get(f"/onboarding/status/{status_link(r)}/")
        self.assertContains(response, 'id="awaits-new-contact"')
        self.assertContains(response, 'id="resend-confirmation"')
        self.client.force_login(self.staff)
        response = self.client.get(
            f"/admin/integrations/onboardingrequest/{r.pk}/change/"
        )
        self.assertContains(
            response, f"Waiting for the new contact address to confirm {NEW}"
        )
        self.assertNotContains(response, 'id="approve-button"')

    def test_the_records_press_never_confirms_the_new_address(self) -> None:
        r = self.post_change()
        path = confirmation_path()
        self.press(path)
        self.press(path)
        r.refresh_from_db()
        self.assertIsNone(r.new_contact_confirmed_at)
        self.assertFalse(
            OnboardingRequest.objects.address_confirmed(self.server.institution, NEW)
        )
        self.assertTrue(
            OnboardingRequest.objects.address_confirmed(self.server.institution, RECORD)
        )
        self.assertEqual(len([m for m in mail.outbox if m.to == [NEW]]), 1)

    def test_its_own_link_shows_the_contact_change_and_then_queues_it(self) -> None:
        r = self.post_change()
        self.press(confirmation_path())
        path = contact_path(mail.outbox[-1])
        response = self.client.get(path)
        self.assertContains(response, 'id="confirm-button"')
        self.assertContains(response, NEW)
        self.assertContains(response, RECORD)  # the contact it would replace
        self.assertNotContains(response, "evil.example")  # the rest is not its business
        r.refresh_from_db()
        self.assertIsNone(r.new_contact_confirmed_at)
        self.press(path)
        r.refresh_from_db()
        self.assertIsNotNone(r.new_contact_confirmed_at)
        self.assertIsNotNone(r.confirmed_at)
        self.assertEqual(list(OnboardingRequest.objects.review_queue()), [r])
        self.assertEqual(mail.outbox[-1].to, [STAFF])
        self.assertTrue(
            OnboardingRequest.objects.address_confirmed(self.server.institution, NEW)
        )

    def test_the_two_links_do_not_stand_in_for_each_other(self) -> None:
        r = self.post_change()
        self.assertEqual(
            self.client.post(
                f"/onboarding/confirm-contact/{confirmation_link(r)}/"
            ).status_code,
            404,
        )
        self.press(confirmation_path())
        self.assertEqual(
            self.client.post(f"/onboarding/confirm/{new_contact_link(r)}/").status_code,
            404,
        )
        self.assertEqual(
            self.client.post(
                f"/onboarding/confirm-contact/{status_link(r)}/"
            ).status_code,
            404,
        )
        r.refresh_from_db()
        self.assertIsNone(r.new_contact_confirmed_at)

    def test_a_request_naming_no_new_contact_has_no_such_link(self) -> None:
        r = submitted_request(confirmed=False, institution_name="Other")
        response = self.client.get(
            f"/onboarding/confirm-contact/{new_contact_link(r)}/"
        )
        self.assertEqual(response.status_code, 404)

    def test_unconfirmed_in_time_the_change_expires(self) -> None:
        r = self.post_change()
        self.press(confirmation_path())
        OnboardingRequest.objects.filter(pk=r.pk).update(
            created_at=timezone.now() - timedelta(hours=49)
        )
        with self.captureOnCommitCallbacks(execute=True):
            response = self.client.post(contact_path(mail.outbox[-1]))
        self.assertContains(response, "has expired", status_code=410)
        self.assertEqual(list(OnboardingRequest.objects.confirmation_expired()), [r])

    def test_sending_again_goes_to_the_address_the_request_waits_for(self) -> None:
        r = self.post_change()
        self.press(confirmation_path())
        OnboardingRequest.objects.filter(pk=r.pk).update(
            confirmation_sent_at=timezone.now() - timedelta(minutes=6)
        )
        mail.outbox.clear()
        with self.captureOnCommitCallbacks(execute=True):
            self.client.post(f"/onboarding/status/{status_link(r)}/resend-confirmation")
        (message,) = mail.outbox
        self.assertEqual(message.to, [NEW])
        self.assertRegex(message.body, _CONTACT_URL)


class BecomingTheContact(ChangeTestCase):
    def confirmed_change(self) -> OnboardingRequest:
        r = self.post_change()
        self.press(confirmation_path())
        self.press(contact_path(mail.outbox[-1]))
        mail.outbox.clear()
        r.refresh_from_db()
        return r

    def test_approval_makes_it_the_contact_and_tells_the_old_one(self) -> None:
        r = self.confirmed_change()
        with self.captureOnCommitCallbacks(execute=True):
            approve_request(r, self.staff)
        institution = Institution.objects.get(pk=self.server.institution_id)
        self.assertEqual(institution.contact_email, NEW)
        notice = [m for m in mail.outbox if "contact address changed" in m.subject]
        (message,) = notice
        self.assertEqual(message.to, [RECORD])
        self.assertIn(f"is now {NEW}", message.body)
        self.assertIn(r.reference, message.subject)

    def test_it_then_confirms_later_changes_and_hears_alerts(self) -> None:
        r = self.confirmed_change()
        approve_request(r, self.staff)
        health, _ = ServerHealth.objects.get_or_create(server=self.server)
        health.refresh_from_db()
        self.assertEqual(alerts.confirmed_contact(health), NEW)
        server = DicomWebServer.objects.select_related("institution").get(
            pk=self.server.pk
        )
        later = lifecycle.submit_request(
            {
                **OnboardingRequest.values_describing(server),
                "notes": "",
                "emails_to_add": [],
                "emails_to_remove": [],
            },
            client_address=None,
            site_url="http://testserver",
            server=server,
            submitted_from=r,
        )
        self.assertEqual(later.confirmation_address, NEW)

    def test_typed_into_a_change_alone_it_never_hears_alerts(self) -> None:
        """The old bug: the record confirmed the change, the row said NEW."""
        r = self.post_change()
        self.press(confirmation_path())
        # Say staff then set the address by hand: it still confirmed nothing.
        Institution.objects.filter(pk=self.server.institution_id).update(
            contact_email=NEW
        )
        OnboardingRequest.objects.filter(pk=r.pk).update(confirmed_at=timezone.now())
        health, _ = ServerHealth.objects.get_or_create(server=self.server)
        health.refresh_from_db()
        self.assertIsNone(alerts.confirmed_contact(health))


class OddLinksAndRows(ChangeTestCase):
    def test_odd_links_are_plain_404s_never_500s(self) -> None:
        for prefix in ("/onboarding/confirm-contact/", "/onboarding/confirm/"):
            for bad in ("%00", "%ED%A0%80", "x" * 5000, "a:b:c", "%0A"):
                for method in (self.client.get, self.client.post):
                    with self.subTest(prefix=prefix, bad=bad[:10], method=method):
                        self.assertEqual(method(f"{prefix}{bad}/").status_code, 404)

    def test_other_methods_are_refused(self) -> None:
        r = self.post_change()
        self.press(confirmation_path())
        path = f"/onboarding/confirm-contact/{new_contact_link(r)}/"
        self.assertEqual(self.client.put(path).status_code, 405)
        self.assertEqual(self.client.delete(path).status_code, 405)
        r.refresh_from_db()
        self.assertIsNone(r.new_contact_confirmed_at)

    def test_a_change_whose_server_was_deleted_still_renders(self) -> None:
        self.post_change()
        DicomWebServer.objects.filter(pk=self.server.pk).delete()
        response = self.client.get(confirmation_path())
        self.assertContains(response, "No field of the server or the institution")
