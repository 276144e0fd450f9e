"""The contact confirms their address by an emailed link before anyone
reviews the request, and decisions go only to a confirmed address."""

from __future__ import annotations

import io
from datetime import timedelta
from unittest import mock

from django.contrib.auth import get_user_model
from django.core import mail
from django.core.management import call_command
from django.test import TestCase, override_settings
from django.utils import timezone

from integrations.models import (
    ConnectivityCheck,
    DicomWebServer,
    Institution,
    OnboardingRequest,
)
from integrations.onboarding import approve_request, lifecycle
from integrations.onboarding.links import confirmation_link, status_link
from tests.factories import (
    submitted_request,
    update_request_for,
)
from tests.onboarding_helpers import (
    FORM_URL,
    FreshRateLimit,
    confirmation_mails,
    confirmation_path,
    confirmation_url_in,
    form_data,
)

QUEUE = "/admin/integrations/onboardingrequest/"
STAFF = "queue@pacsbin.example"


def confirm_url(r: OnboardingRequest) -> str:
    return f"/onboarding/confirm/{confirmation_link(r)}/"


def age(r: OnboardingRequest, hours: float) -> None:
    """Make ``r`` look sent ``hours`` ago."""
    OnboardingRequest.objects.filter(pk=r.pk).update(
        created_at=timezone.now() - timedelta(hours=hours)
    )
    r.refresh_from_db()


@override_settings(ONBOARDING_NOTIFY_EMAILS=[STAFF])
class SubmittingTheForm(FreshRateLimit, TestCase):
    @classmethod
    def setUpTestData(cls) -> None:
        cls.staff = get_user_model().objects.create_superuser(
            "boss", "boss@pacsbin.example", "pw"
        )

    def submit(self, **overrides: str) -> OnboardingRequest:
        with self.captureOnCommitCallbacks(execute=True):
            response = self.client.post(FORM_URL, form_data(**overrides), follow=True)
        self.assertContains(response, "Check your mailbox")
        self.assertContains(response, "Pat.Admin@st-example.org")
        return OnboardingRequest.objects.get()

    def test_only_the_contact_is_mailed_a_link_that_carries_nothing_they_typed(
        self,
    ) -> None:
        r = self.submit(
            institution_name="Totally Legit Bank",
            contact_name="Claim your prize at www.prize.example",
            server_name="Click here http://evil.example",
            notes="Call +1 555 0100 now",
        )
        (message,) = mail.outbox
        self.assertEqual(message.to, ["Pat.Admin@st-example.org"])
        self.assertEqual(
            message.subject, f"Confirm your Pacsbin integration request {r.reference}"
        )
        for typed in (
            "Legit Bank",
            "prize",
            "evil.example",
            "555",
            "pacs.st-example.org",
        ):
            self.assertNotIn(typed, message.body)
            self.assertNotIn(typed, message.subject)
        self.assertIn("Hello,", message.body)
        self.assertIn("within 48 hours", message.body)
        self.assertTrue(
            confirmation_url_in(message).startswith(
                "http://testserver/onboarding/confirm/"
            )
        )
        self.assertIsNone(r.confirmed_at)
        self.assertEqual(r.confirmation_address, "Pat.Admin@st-example.org")

    def test_an_unconfirmed_request_is_not_in_the_review_queue(self) -> None:
        r = self.submit()
        self.client.force_login(self.staff)
        self.assertNotContains(self.client.get(QUEUE), r.reference)
        self.assertContains(
            self.client.get(QUEUE, {"status": "unconfirmed"}), r.reference
        )
        self.assertEqual(list(OnboardingRequest.objects.review_queue()), [])

    def test_opening_the_link_shows_a_button_and_confirms_nothing(self) -> None:
        r = self.submit()
        response = self.client.get(confirmation_path())
        self.assertContains(response, 'id="confirm-button"')
        self.assertContains(response, "csrfmiddlewaretoken")
        r.refresh_from_db()
        self.assertIsNone(r.confirmed_at)
        self.assertEqual(len(mail.outbox), 1)

    def test_pressing_the_button_confirms_tells_staff_and_queues_it(self) -> None:
        r = self.submit()
        with self.captureOnCommitCallbacks(execute=True):
            response = self.client.post(confirmation_path())
        self.assertContains(response, "is confirmed and waits for review")
        r.refresh_from_db()
        self.assertIsNotNone(r.confirmed_at)
        self.assertEqual([m.to for m in mail.outbox[1:]], [[STAFF]])
        self.assertIn(r.reference, mail.outbox[1].subject)
        self.client.force_login(self.staff)
        self.assertContains(self.client.get(QUEUE), r.reference)
        self.assertEqual(list(OnboardingRequest.objects.review_queue()), [r])

    def test_pressing_it_again_does_not_tell_staff_twice(self) -> None:
        self.submit()
        path = confirmation_path()
        for _ in range(2):
            with self.captureOnCommitCallbacks(execute=True):
                self.client.post(path)
        self.assertEqual(len([m for m in mail.outbox if m.to == [STAFF]]), 1)

    def test_the_post_needs_the_csrf_token(self) -> None:
        r = self.submit()
        client = self.client_class(enforce_csrf_checks=True)
        response = client.post(confirmation_path())
        self.assertEqual(response.status_code, 403)
        r.refresh_from_db()
        self.assertIsNone(r.confirmed_at)

    def test_the_status_page_says_it_waits_for_confirmation(self) -> None:
        r = self.submit()
        response = self.client.get(f"/onboarding/status/{status_link(r)}/")
        self.assertContains(response, "Waiting for email confirmation")
        self.assertContains(response, 'id="resend-confirmation"')


class TheLink(TestCase):
    def setUp(self) -> None:
        self.r = submitted_request(confirmed=False)

    def assert_unconfirmed(self) -> None:
        self.r.refresh_from_db()
        self.assertIsNone(self.r.confirmed_at)

    def test_a_tampered_link_is_a_plain_404(self) -> None:
        link = confirmation_link(self.r)
        for bad in (link[:-1] + ("A" if link[-1] != "A" else "B"), "x" + link, "junk"):
            with self.subTest(bad=bad):
                self.assertEqual(
                    self.client.get(f"/onboarding/confirm/{bad}/").status_code, 404
                )
                self.assertEqual(
                    self.client.post(f"/onboarding/confirm/{bad}/").status_code, 404
                )
        self.assert_unconfirmed()

    def test_the_status_link_does_not_confirm(self) -> None:
        """Whoever submits sees the status link; only the mailbox gets this one."""
        response = self.client.post(f"/onboarding/confirm/{status_link(self.r)}/")
        self.assertEqual(response.status_code, 404)
        self.assert_unconfirmed()

    def test_an_expired_link_is_refused_with_a_message(self) -> None:
        url = confirm_url(self.r)
        later = timezone.now().timestamp() + 49 * 3600
        with mock.patch("django.core.signing.time.time", return_value=later):
            for method in (self.client.get, self.client.post):
                response = method(url)
                self.assertContains(response, "This link has expired", status_code=410)
                self.assertContains(response, "more than 48 hours old", status_code=410)
        self.assert_unconfirmed()

    @override_settings(ONBOARDING_CONFIRM_HOURS=2)
    def test_the_window_follows_the_setting(self) -> None:
        url = confirm_url(self.r)
        later = timezone.now().timestamp() + 3 * 3600
        with mock.patch("django.core.signing.time.time", return_value=later):
            self.assertEqual(self.client.post(url).status_code, 410)
        self.assert_unconfirmed()
        self.assertEqual(self.client.post(url).status_code, 200)
        self.r.refresh_from_db()
        self.assertIsNotNone(self.r.confirmed_at)

    def test_a_fresh_link_to_an_expired_request_is_refused_too(self) -> None:
        age(self.r, 49)
        response = self.client.post(confirm_url(self.r))
        self.assertContains(response, "has expired", status_code=410)
        self.assert_unconfirmed()

    def test_it_shows_no_institution_or_server_to_whoever_opens_it(self) -> None:
        response = self.client.get(confirm_url(self.r))
        self.assertNotContains(response, "St. Example Hospital")
        self.assertNotContains(response, "pacs.st-example.org")
        self.assertContains(response, self.r.reference)


@override_settings(ONBOARDING_NOTIFY_EMAILS=[STAFF])
class Decisions(TestCase):
    @classmethod
    def setUpTestData(cls) -> None:
        cls.staff = get_user_model().objects.create_superuser(
            "boss", "boss@pacsbin.example", "pw"
        )

    def setUp(self) -> None:
        self.client.force_login(self.staff)

    def test_an_unconfirmed_request_cannot_be_approved_or_rejected(self) -> None:
        r = submitted_request(confirmed=False)
        for action, data in (
            ("approve", {"activate": "on"}),
            ("reject", {"reason": "no"}),
        ):
            with self.subTest(action=action):
                response = self.client.post(
                    f"{QUEUE}{r.pk}/{action}/", data, follow=True
                )
                self.assertContains(
                    response, "its contact has not confirmed their email address yet"
                )
                r.refresh_from_db()
                self.assertEqual((r.status, r.reviewer), ("submitted", None))
        self.assertEqual(Institution.objects.count(), 0)
        self.assertEqual(DicomWebServer.objects.count(), 0)
        self.assertEqual(mail.outbox, [])

    def test_the_review_page_says_so_and_offers_no_buttons(self) -> None:
        r = submitted_request(confirmed=False)
        response = self.client.get(f"{QUEUE}{r.pk}/change/")
        self.assertContains(response, 'id="unconfirmed"')
        self.assertNotContains(response, 'id="approve-button"')

    def test_the_decision_goes_to_the_confirmed_address_only(self) -> None:
        r = submitted_request()
        # Whatever the row later says, the mail goes where the link was opened.
        OnboardingRequest.objects.filter(pk=r.pk).update(
            contact_email="someone-else@elsewhere.example"
        )
        r.refresh_from_db()
        with self.captureOnCommitCallbacks(execute=True):
            approve_request(r, self.staff)
        (message,) = mail.outbox
        self.assertEqual(message.to, ["pat.admin@st-example.org"])
        self.assertEqual(message.recipients(), ["pat.admin@st-example.org"])

    def test_no_decision_mail_for_a_row_never_confirmed(self) -> None:
        from integrations.onboarding import notify

        r = submitted_request(confirmed=False)
        OnboardingRequest.objects.filter(pk=r.pk).update(status="approved")
        r.refresh_from_db()
        with self.assertLogs("integrations.onboarding.notify", "WARNING"):
            notify.decision_made(r, "http://testserver")
        self.assertEqual(mail.outbox, [])


@override_settings(ONBOARDING_NOTIFY_EMAILS=[STAFF])
class ChangesFromTheStatusLink(FreshRateLimit, TestCase):
    @classmethod
    def setUpTestData(cls) -> None:
        cls.staff = get_user_model().objects.create_superuser(
            "boss", "boss@pacsbin.example", "pw"
        )
        cls.origin = submitted_request()
        cls.server = approve_request(cls.origin, cls.staff).server

    def post_change(self, **overrides: str) -> OnboardingRequest:
        data = {
            "contact_name": "Mallory",
            "contact_email": "mallory@attacker.example",
            "server_name": "Main PACS",
            "qido_url": "https://evil.example/dicomweb",
            "wado_same": "on",
            "cors_mode": "direct",
            "emails_to_add": "mallory@attacker.example",
            "emails_to_remove": "",
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

    def test_the_change_is_confirmed_from_the_address_on_record(self) -> None:
        r = self.post_change()
        (message,) = mail.outbox
        self.assertEqual(message.to, ["pat.admin@st-example.org"])
        self.assertIn("contact address on record", message.body)
        self.assertNotIn("attacker", message.body)
        self.assertEqual(r.confirmation_address, "pat.admin@st-example.org")
        self.assertEqual(list(OnboardingRequest.objects.review_queue()), [])

    def test_staff_hear_of_it_and_the_decision_goes_to_the_record_once_confirmed(
        self,
    ) -> None:
        r = self.post_change(
            contact_name="Pat Admin", contact_email="pat.admin@st-example.org"
        )
        with self.captureOnCommitCallbacks(execute=True):
            self.client.post(confirmation_path())
        self.assertEqual(mail.outbox[-1].to, [STAFF])
        r.refresh_from_db()
        self.assertEqual(list(OnboardingRequest.objects.review_queue()), [r])
        mail.outbox.clear()
        with self.captureOnCommitCallbacks(execute=True):
            lifecycle.reject_request(r, self.staff, "Not from your team.")
        self.assertEqual([m.to for m in mail.outbox], [["pat.admin@st-example.org"]])

    def test_without_an_address_on_record_the_origin_confirmed_one_is_used(
        self,
    ) -> None:
        Institution.objects.filter(pk=self.server.institution_id).update(
            contact_email=""
        )
        self.post_change()
        self.assertEqual(mail.outbox[0].to, ["pat.admin@st-example.org"])


class Resending(FreshRateLimit, TestCase):
    def setUp(self) -> None:
        super().setUp()
        self.r = submitted_request(confirmed=False)
        self.url = f"/onboarding/status/{status_link(self.r)}/resend-confirmation"

    def long_ago(self) -> None:
        OnboardingRequest.objects.filter(pk=self.r.pk).update(
            confirmation_sent_at=timezone.now() - timedelta(minutes=6)
        )

    def test_it_is_refused_a_few_minutes_after_the_last_send(self) -> None:
        response = self.client.post(self.url)
        self.assertContains(response, "less than 5 minutes ago", status_code=409)
        self.assertEqual(mail.outbox, [])

    def test_later_it_sends_the_same_kind_of_link_to_the_same_address(self) -> None:
        self.long_ago()
        with self.captureOnCommitCallbacks(execute=True):
            response = self.client.post(self.url)
        self.assertRedirects(response, f"/onboarding/submitted/{status_link(self.r)}/")
        (message,) = confirmation_mails("pat.admin@st-example.org")
        with self.captureOnCommitCallbacks(execute=True):
            self.client.post(confirmation_path(message))
        self.r.refresh_from_db()
        self.assertEqual(self.r.confirmation_sends, 2)
        self.assertIsNotNone(self.r.confirmed_at)

    def test_it_stops_after_five_sends(self) -> None:
        OnboardingRequest.objects.filter(pk=self.r.pk).update(confirmation_sends=5)
        self.long_ago()
        response = self.client.post(self.url)
        self.assertContains(response, "already sent 5 times", status_code=409)
        self.assertEqual(mail.outbox, [])

    def test_one_network_is_limited_per_hour(self) -> None:
        for _ in range(10):
            self.client.post(self.url)
        response = self.client.post(self.url)
        self.assertContains(response, "Too many confirmation emails", status_code=429)

    def test_a_get_sends_nothing(self) -> None:
        self.long_ago()
        self.assertEqual(self.client.get(self.url).status_code, 405)
        self.assertEqual(mail.outbox, [])

    def test_a_confirmed_or_expired_request_is_not_sent_again(self) -> None:
        self.long_ago()
        age(self.r, 49)
        self.assertContains(self.client.post(self.url), "has expired", status_code=409)
        confirmed = submitted_request(institution_name="Other")
        url = f"/onboarding/status/{status_link(confirmed)}/resend-confirmation"
        self.assertContains(self.client.post(url), "already confirmed", status_code=409)


class Expiry(TestCase):
    @classmethod
    def setUpTestData(cls) -> None:
        cls.fresh = submitted_request(confirmed=False, institution_name="Fresh")
        cls.stale = submitted_request(confirmed=False, institution_name="Stale")
        age(cls.stale, 49)
        cls.confirmed = submitted_request(institution_name="Confirmed")
        age(cls.confirmed, 100)

    def test_the_queries_sort_them(self) -> None:
        objects = OnboardingRequest.objects
        self.assertEqual(list(objects.awaiting_confirmation()), [self.fresh])
        self.assertEqual(list(objects.confirmation_expired()), [self.stale])
        self.assertEqual(list(objects.review_queue()), [self.confirmed])

    def test_the_admin_filters_the_expired_ones(self) -> None:
        staff = get_user_model().objects.create_superuser("boss", "b@p.example", "pw")
        self.client.force_login(staff)
        response = self.client.get(QUEUE, {"status": "expired"})
        self.assertContains(response, self.stale.reference)
        self.assertNotContains(response, self.fresh.reference)
        self.assertNotContains(response, self.confirmed.reference)
        self.assertContains(response, "Expired")

    def test_the_command_deletes_only_the_expired_ones(self) -> None:
        server = approve_request(
            submitted_request(institution_name="Live"),
            get_user_model().objects.create_user("r"),
        ).server
        # A browser check of a live server from an expired change stays in the
        # server's history.
        change = update_request_for(server, confirmed=False)
        check = ConnectivityCheck.objects.create(
            server=server, onboarding_request=change, source="browser", outcome="ok"
        )
        age(change, 49)
        out = io.StringIO()
        call_command("expire_onboarding_requests", "--dry-run", stdout=out)
        self.assertIn("would delete 2 request(s)", out.getvalue())
        self.assertEqual(OnboardingRequest.objects.count(), 5)

        out = io.StringIO()
        call_command("expire_onboarding_requests", stdout=out)
        self.assertIn(self.stale.reference, out.getvalue())
        self.assertIn(
            "deleted 2 request(s) not confirmed within 48 hours", out.getvalue()
        )
        self.assertEqual(
            set(OnboardingRequest.objects.values_list("institution_name", flat=True)),
            {"Fresh", "Confirmed", "Live"},
        )
        check.refresh_from_db()
        self.assertEqual((check.server, check.onboarding_request), (server, None))
