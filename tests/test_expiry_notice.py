"""The public form's "Approved until", carried through review into the
approvals; and the notice a week before approvals end: one mail per server
to staff and one to the confirmed contact, never twice for the same ones."""

from __future__ import annotations

import threading
from datetime import timedelta
from unittest import mock, skipUnless

from django.contrib.auth import get_user_model
from django.core import mail
from django.db import connection, transaction
from django.test import TestCase, TransactionTestCase, override_settings
from django.utils import timezone

from integrations import expiry
from integrations.models import ApprovedUser, DicomWebServer, OnboardingRequest
from integrations.onboarding import approve_request
from integrations.onboarding.lifecycle import ReviewError
from integrations.onboarding.links import status_link
from tests.factories import (
    confirm,
    make_institution,
    make_server,
    submitted_request,
)
from tests.onboarding_helpers import FORM_URL, FreshRateLimit, form_data


class ApprovedUntilOnTheForm(FreshRateLimit, TestCase):
    @classmethod
    def setUpTestData(cls) -> None:
        cls.reviewer = get_user_model().objects.create_superuser(
            "rev", "rev@pacsbin.example", "pw-long-enough-1"
        )

    def test_the_day_is_stored_and_the_approval_lasts_through_it(self) -> None:
        day = timezone.localdate() + timedelta(days=120)
        response = self.client.post(FORM_URL, form_data(emails_end_on=day.isoformat()))
        self.assertEqual(response.status_code, 302)
        r = OnboardingRequest.objects.get()
        self.assertEqual(r.emails_end_on, day)
        server = approve_request(confirm(r), self.reviewer).server
        ends = set(server.approved_users.values_list("expires_at", flat=True))
        self.assertEqual(ends, {expiry.end_of_day(day)})

    def test_left_empty_the_approvals_never_end(self) -> None:
        self.client.post(FORM_URL, form_data())
        r = confirm(OnboardingRequest.objects.get())
        server = approve_request(r, self.reviewer).server
        self.assertEqual(
            set(server.approved_users.values_list("expires_at", flat=True)), {None}
        )

    def test_bad_days_are_refused_naming_the_value_and_nothing_is_stored(
        self,
    ) -> None:
        today = timezone.localdate()
        for raw, named in [
            ((today - timedelta(days=1)).isoformat(), "is in the past"),
            ((today + timedelta(days=4000)).isoformat(), "more than 3650 days"),
            ("31/03/2027", "“31/03/2027” is not a day"),
            ("99999-01-01", "“99999-01-01” is not a day"),
            ("2027-02-30", "“2027-02-30” is not a day"),
            ("2027\x00-01-01", "\\u0000"),
        ]:
            with self.subTest(raw=raw):
                response = self.client.post(FORM_URL, form_data(emails_end_on=raw))
                self.assertEqual(response.status_code, 400)
                self.assertContains(response, named, status_code=400)
        self.assertFalse(OnboardingRequest.objects.exists())

    def test_the_reviewer_sees_it_and_a_day_passed_in_the_queue_is_refused(
        self,
    ) -> None:
        day = timezone.localdate() + timedelta(days=2)
        r = submitted_request(emails_end_on=day)
        self.client.force_login(self.reviewer)
        page = self.client.get(f"/admin/integrations/onboardingrequest/{r.pk}/change/")
        self.assertContains(page, f"until {day:%Y-%m-%d}")
        later = timezone.now() + timedelta(days=5)
        with (
            mock.patch("django.utils.timezone.now", return_value=later),
            self.assertRaisesMessage(ReviewError, "which has passed"),
        ):
            approve_request(r, self.reviewer)
        self.assertFalse(DicomWebServer.objects.exists())
        self.assertEqual(OnboardingRequest.objects.get().status, "submitted")

    def test_a_change_gives_its_day_to_new_and_listed_approvals(self) -> None:
        origin = submitted_request()
        server = approve_request(origin, self.reviewer).server
        day = timezone.localdate() + timedelta(days=30)
        url = f"/onboarding/status/{status_link(origin)}/change/"
        page = self.client.get(url)
        self.assertContains(page, "Approved until")
        response = self.client.post(
            url,
            {
                "contact_name": "Pat Admin",
                "contact_email": "pat.admin@st-example.org",
                "server_name": "Main PACS",
                "qido_url": "https://pacs.st-example.org/dicomweb",
                "wado_same": "on",
                "cors_mode": "reverse_proxy",
                "emails_to_add": "carol@st-example.org\nann@st-example.org",
                "emails_end_on": day.isoformat(),
                "emails_to_remove": "",
                "notes": "",
                "leave_blank": "",
            },
        )
        self.assertEqual(response.status_code, 302, response.content)
        update = OnboardingRequest.objects.get(kind="update")
        self.assertEqual(update.emails_end_on, day)
        approve_request(confirm(update), self.reviewer)
        ends = dict(server.approved_users.values_list("email", "expires_at"))
        self.assertEqual(
            ends,
            {
                "ann@st-example.org": expiry.end_of_day(day),
                "bob@st-example.org": None,
                "carol@st-example.org": expiry.end_of_day(day),
            },
        )


@override_settings(
    REGISTRY_PUBLIC_ORIGIN="https://registry.example", MONITOR_ALERT_EMAILS=[]
)
class WeekBeforeNotice(TestCase):
    @classmethod
    def setUpTestData(cls) -> None:
        get_user_model().objects.create_superuser(
            "staff", "staff@pacsbin.example", "pw-long-enough-1"
        )
        # A contact who confirmed their address through onboarding.
        origin = submitted_request(
            institution_name="St. Example Hospital",
            contact_email="pat.admin@st-example.org",
        )
        cls.reviewer = get_user_model().objects.get(username="staff")
        cls.main = approve_request(origin, cls.reviewer).server
        cls.other = make_server(cls.main.institution, "Second PACS")
        cls.quiet = make_server(make_institution("Quiet Clinic"), "Quiet PACS")
        now = timezone.now()
        cls.now = now
        for server, email, end in [
            (cls.main, "ann@st-example.org", now + timedelta(days=3)),
            (cls.main, "bob@st-example.org", now + timedelta(days=6)),
            (cls.main, "later@st-example.org", now + timedelta(days=20)),
            (cls.main, "gone@st-example.org", now - timedelta(days=1)),
            (cls.other, "cat@st-example.org", now + timedelta(days=2)),
            (cls.quiet, "dan@quiet.example", None),
        ]:
            row, _ = ApprovedUser.objects.get_or_create(
                server=server,
                email_key=email,
                defaults={"email": email},
            )
            row.expires_at = end
            row.save()

    def test_one_mail_per_server_to_staff_and_to_the_confirmed_contact(self) -> None:
        sent = expiry.notify_expiring(self.now)
        self.assertEqual(sent, 4)  # two servers, staff and contact each
        by_server: dict[str, list] = {}
        for message in mail.outbox:
            name = "Main PACS" if "Main PACS" in message.subject else "Second PACS"
            by_server.setdefault(name, []).append(message)
        main = by_server["Main PACS"]
        self.assertEqual(
            sorted(m.to[0] for m in main),
            ["pat.admin@st-example.org", "staff@pacsbin.example"],
        )
        for message in main:
            self.assertIn("2 approval(s) end within 7 days", message.subject)
            self.assertIn("ann@st-example.org: ends", message.body)
            self.assertIn("bob@st-example.org: ends", message.body)
            self.assertNotIn("later@", message.body)
            self.assertNotIn("gone@", message.body)
        staff = next(m for m in main if m.to == ["staff@pacsbin.example"])
        self.assertIn(
            "https://registry.example/admin/integrations/approveduser/"
            f"?server__id__exact={self.main.pk}&expiry=soon",
            staff.body,
        )
        contact = next(m for m in main if m.to == ["pat.admin@st-example.org"])
        self.assertIn("https://registry.example/onboarding/status/", contact.body)
        self.assertNotIn("/admin/", contact.body)
        self.assertEqual(len(by_server["Second PACS"]), 2)

    def test_the_same_approvals_are_never_told_twice(self) -> None:
        expiry.notify_expiring(self.now)
        mail.outbox.clear()
        self.assertEqual(expiry.notify_expiring(self.now + timedelta(hours=1)), 0)
        self.assertEqual(mail.outbox, [])
        # One more entering the week is told alone, a day later.
        self.assertEqual(
            expiry.notify_expiring(self.now + timedelta(days=14)), 2
        )  # later@ (20 days) is now within the week
        self.assertTrue(all("1 approval(s)" in m.subject for m in mail.outbox))
        self.assertIn("later@st-example.org", mail.outbox[0].body)

    def test_a_renewed_approval_is_told_again_before_its_new_end(self) -> None:
        expiry.notify_expiring(self.now)
        mail.outbox.clear()
        from integrations import registry

        registry.add_approved_users(
            self.main,
            ["ann@st-example.org"],
            expiry.Expiry(self.now + timedelta(days=30)),
        )
        self.assertEqual(expiry.notify_expiring(self.now), 0)
        self.assertEqual(expiry.notify_expiring(self.now + timedelta(days=25)), 2)
        self.assertIn("ann@st-example.org", mail.outbox[0].body)

    def test_an_unconfirmed_contact_is_not_mailed_and_suspended_servers_wait(
        self,
    ) -> None:
        self.main.institution.contact_email = "someone.else@st-example.org"
        self.main.institution.save()
        DicomWebServer.objects.filter(pk=self.other.pk).update(status="suspended")
        expiry.notify_expiring(self.now)
        self.assertEqual([m.to for m in mail.outbox], [["staff@pacsbin.example"]])
        self.assertTrue(
            ApprovedUser.objects.filter(
                server=self.other, expiry_notified_at__isnull=True
            ).exists()
        )

    def test_a_mail_server_that_is_down_leaves_them_for_the_next_round(
        self,
    ) -> None:
        with mock.patch(
            "django.core.mail.backends.locmem.EmailBackend.send_messages",
            side_effect=OSError("connection refused"),
        ):
            self.assertEqual(expiry.notify_expiring(self.now), 0)
        self.assertFalse(
            ApprovedUser.objects.filter(expiry_notified_at__isnull=False).exists()
        )
        self.assertEqual(expiry.notify_expiring(self.now), 4)

    def test_the_monitor_command_runs_it(self) -> None:
        from django.core.management import call_command

        with mock.patch.object(expiry, "notify_expiring", return_value=0) as notify:
            call_command("monitor", "--once", "--wait", "0", stdout=mock.Mock())
        notify.assert_called_once()

    def test_beat_schedules_it(self) -> None:
        from django.conf import settings

        from integrations.monitoring import tasks

        entry = settings.CELERY_BEAT_SCHEDULE["approvals-notify-expiring"]
        self.assertEqual(entry["task"], tasks.notify_expiring.name)
        with mock.patch.object(expiry, "notify_expiring", return_value=3):
            self.assertEqual(tasks.notify_expiring.apply().get(), 3)


@override_settings(
    REGISTRY_PUBLIC_ORIGIN="https://registry.example",
    MONITOR_ALERT_EMAILS=["ops@pacsbin.example"],
)
class TwoDispatchers(TransactionTestCase):
    """Two dispatchers at once tell each approval once (PostgreSQL: skip
    locked rows; SQLite: one writer at a time, IMMEDIATE transactions, which
    the suite's shared in-memory database cannot show with threads)."""

    def test_a_claimed_approval_is_not_claimed_again(self) -> None:
        server = make_server(make_institution(), "Main PACS")
        now = timezone.now()
        ApprovedUser.objects.create(
            server=server,
            email="a@x.example",
            email_key="a@x.example",
            expires_at=now + timedelta(days=2),
        )
        self.assertEqual(len(expiry.claim(server.pk, now)), 1)
        self.assertEqual(expiry.claim(server.pk, now), [])

    @skipUnless(connection.vendor == "postgresql", "threads need PostgreSQL")
    def test_rows_one_dispatcher_holds_are_skipped_by_the_other(self) -> None:
        server = make_server(make_institution(), "Main PACS")
        now = timezone.now()
        ApprovedUser.objects.create(
            server=server,
            email="a@x.example",
            email_key="a@x.example",
            expires_at=now + timedelta(days=2),
        )
        holding, done = threading.Event(), threading.Event()
        first: list[list[expiry.Ending]] = []

        def slow_dispatcher() -> None:
            try:
                with transaction.atomic():
                    first.append(expiry.claim(server.pk, now))
                    holding.set()
                    done.wait(30)
            finally:
                connection.close()

        thread = threading.Thread(target=slow_dispatcher)
        thread.start()
        try:
            self.assertTrue(holding.wait(30))
            self.assertEqual(expiry.claim(server.pk, now), [])
        finally:
            done.set()
            thread.join(30)
        self.assertEqual([e.email for e in first[0]], ["a@x.example"])

    @skipUnless(connection.vendor == "postgresql", "threads need PostgreSQL")
    def test_each_approval_is_claimed_by_one_of_them(self) -> None:
        server = make_server(make_institution(), "Main PACS")
        now = timezone.now()
        for number in range(40):
            ApprovedUser.objects.create(
                server=server,
                email=f"user{number}@x.example",
                email_key=f"user{number}@x.example",
                expires_at=now + timedelta(days=2),
            )
        claimed: list[list[expiry.Ending]] = []
        barrier = threading.Barrier(2)

        def dispatcher() -> None:
            try:
                barrier.wait()
                claimed.append(expiry.claim(server.pk, now))
            finally:
                connection.close()

        threads = [threading.Thread(target=dispatcher) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        emails = [ending.email for batch in claimed for ending in batch]
        self.assertEqual(len(claimed), 2)
        self.assertEqual(len(emails), 40)
        self.assertEqual(len(set(emails)), 40)
