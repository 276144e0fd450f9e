"""Access reviews: the schedule (with the clock controlled), the contact's
page through the emailed link, the answer with the contact as the history's
actor, overdue reviews and enforcement, and the staff's ways to start one."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any
from unittest import mock

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.core import mail
from django.db import IntegrityError, transaction
from django.test import Client, TestCase, override_settings
from django.urls import reverse
from django.utils import timezone

from integrations.accessreviews import flows
from integrations.models import (
    AccessReview,
    ApprovedUser,
    DicomWebServer,
    EdgeUsage,
    Institution,
    OnboardingRequest,
)
from integrations.models.reviews import LINK_MARGIN
from tests.api_helpers import key_header
from tests.factories import api_key, approve, make_institution, make_server

CONTACT = "it.contact@hospital.example"
DAY = timedelta(days=1)
REVIEW_SETTINGS = {
    "ACCESS_REVIEW_DAYS": 180,
    "ACCESS_REVIEW_GRACE_DAYS": 30,
    "ACCESS_REVIEW_ENFORCE": False,
    "EMAIL_BACKEND": "django.core.mail.backends.locmem.EmailBackend",
    "MONITOR_ALERT_EMAILS": ["oncall@pacsbin.example"],
    "REGISTRY_PUBLIC_ORIGIN": "https://registry.example.org",
}


def confirm_contact(institution: Institution, address: str = CONTACT) -> None:
    """The institution's contact address confirmed a link sent to itself
    through onboarding (what makes it a confirmed contact)."""
    institution.contact_email = address
    institution.save()
    OnboardingRequest.objects.create(
        institution=institution,
        reference=f"OB-T{institution.pk:06d}",
        token=f"token-{institution.pk}",
        institution_name=institution.name,
        contact_name="IT",
        contact_email=address,
        confirmation_address=address,
        address_confirmed_at=timezone.now(),
        confirmed_at=timezone.now(),
        server_name="Main PACS",
        qido_url="https://pacs.example.edu/dicomweb",
        wado_url="https://pacs.example.edu/dicomweb",
    )


def reviewed_server(
    emails: list[str] | None = None, age_days: int = 200, name: str = "Hospital"
) -> DicomWebServer:
    institution = make_institution(name)
    confirm_contact(institution)
    server = make_server(
        institution, emails=emails or ["ann@hospital.example", "bob@hospital.example"]
    )
    DicomWebServer.objects.filter(pk=server.pk).update(
        created_at=timezone.now() - timedelta(days=age_days)
    )
    server.refresh_from_db()
    return server


def link_in(message: mail.EmailMessage) -> str:
    found = re.search(r"https://registry\.example\.org(/\S+)", message.body)
    assert found, message.body
    return found.group(1)


def review_mails() -> list[mail.EmailMessage]:
    return [m for m in mail.outbox if m.subject.startswith("Please review")]


@override_settings(**REVIEW_SETTINGS)
class ScheduleTests(TestCase):
    def test_a_server_is_due_days_after_its_creation_then_after_its_last_review(
        self,
    ) -> None:
        server = reviewed_server(age_days=0)
        created = server.created_at
        assert flows.run(created + 179 * DAY)[0] == []
        started, _ = flows.run(created + 181 * DAY)
        assert [r.server_id for r in started] == [server.pk]
        review = started[0]
        assert review.sent_to == CONTACT
        assert review.due_at == review.created_at + 30 * DAY
        assert review.started_by == "schedule"
        (message,) = review_mails()
        assert message.to == [CONTACT]
        assert "/onboarding/access-review/" in link_in(message)
        # No second review while one is open, nor after the answer until the
        # next period has passed from this one.
        assert flows.run(created + 182 * DAY)[0] == []
        flows.answer(review, set(), "", now=created + 185 * DAY)
        assert flows.run(created + 300 * DAY)[0] == []
        again, _ = flows.run(created + 362 * DAY)
        assert [r.server_id for r in again] == [server.pk]
        assert len(review_mails()) == 2

    def test_only_active_servers_with_a_confirmed_contact_are_reviewed(self) -> None:
        reviewed_server(name="Confirmed")
        suspended = reviewed_server(name="Suspended")
        suspended.status = DicomWebServer.Status.SUSPENDED
        suspended.save()
        unconfirmed = make_server(
            make_institution("Typed only", contact_email="typed@hospital.example")
        )
        DicomWebServer.objects.filter(pk=unconfirmed.pk).update(
            created_at=timezone.now() - 400 * DAY
        )
        started, _ = flows.run()
        assert [r.server.institution.name for r in started] == ["Confirmed"]

    @override_settings(ACCESS_REVIEW_DAYS=0)
    def test_zero_days_turns_reviews_off(self) -> None:
        reviewed_server()
        assert flows.run() == ([], [])
        assert not AccessReview.objects.exists()

    def test_the_database_refuses_a_second_open_review(self) -> None:
        server = reviewed_server()
        flows.start_review(server, "staff")
        with self.assertRaises(IntegrityError), transaction.atomic():
            AccessReview.objects.create(
                server=server,
                created_at=timezone.now(),
                due_at=timezone.now(),
                sent_to=CONTACT,
                token_hash="x" * 64,
            )

    def test_monitor_once_runs_the_reviews(self) -> None:
        from django.core.management import call_command

        reviewed_server()
        with mock.patch("integrations.monitoring.tasks.send_round", return_value=[]):
            call_command("monitor", "--once", "--wait", "0", stdout=mock.Mock())
        assert AccessReview.objects.count() == 1


@override_settings(**REVIEW_SETTINGS)
class ReviewPageTests(TestCase):
    def setUp(self) -> None:
        self.server = reviewed_server(
            ["ann@hospital.example", "bob@hospital.example", "cat@hospital.example"]
        )
        self.review = flows.start_review(self.server, "staff").review
        self.path = link_in(review_mails()[0])
        self.client = Client(enforce_csrf_checks=True)

    def open_page(self) -> tuple[Any, str]:
        page = self.client.get(self.path)
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
        assert token, page.text
        return page, token.group(1)

    def ids(self, *emails: str) -> list[str]:
        return [
            str(ApprovedUser.objects.get(server=self.server, email=email).pk)
            for email in emails
        ]

    def test_the_page_lists_each_email_with_who_added_it_and_its_last_use(
        self,
    ) -> None:
        EdgeUsage.objects.create(
            server=self.server,
            email="bob@hospital.example",
            day=timezone.now().date(),
            granted=3,
            last_used_at=timezone.now(),
        )
        page, _ = self.open_page()
        assert page.status_code == 200
        for email in ("ann@hospital.example", "bob@hospital.example"):
            assert email in page.text
        assert f"last used {timezone.now():%Y-%m-%d}" in page.text
        assert "last used never recorded" in page.text
        assert page["Content-Security-Policy"]
        assert "no-cache" in page["Cache-Control"]

    def test_submitting_removes_the_marked_emails_with_the_contact_as_actor(
        self,
    ) -> None:
        _, csrf = self.open_page()
        answer = self.client.post(
            self.path,
            {
                "csrfmiddlewaretoken": csrf,
                "remove": self.ids("ann@hospital.example", "cat@hospital.example"),
                "note": "Ann and Cat left the radiology team.",
            },
        )
        assert answer.status_code == 200
        assert "2 removed" in answer.text
        assert list(
            ApprovedUser.objects.filter(server=self.server).values_list(
                "email", flat=True
            )
        ) == ["bob@hospital.example"]
        removal = ApprovedUser.history.filter(history_type="-")
        assert removal.count() == 2
        assert {row.history_actor for row in removal} == {
            f"{CONTACT} (access review {self.review.pk})"
        }
        self.review.refresh_from_db()
        assert self.review.state == AccessReview.State.ANSWERED
        assert self.review.note == "Ann and Cat left the radiology team."
        assert sorted(self.review.removed) == [
            "ann@hospital.example",
            "cat@hospital.example",
        ]
        assert self.review.kept_count == 1

    def test_a_reused_link_says_already_answered(self) -> None:
        _, csrf = self.open_page()
        self.client.post(self.path, {"csrfmiddlewaretoken": csrf})
        again = self.client.get(self.path)
        assert again.status_code == 410
        assert "already answered" in again.text
        repost = self.client.post(
            self.path,
            {"csrfmiddlewaretoken": csrf, "remove": self.ids("bob@hospital.example")},
        )
        assert repost.status_code == 410
        assert ApprovedUser.objects.filter(server=self.server).count() == 3

    def test_a_tampered_link_is_refused(self) -> None:
        token = self.path.rstrip("/").rsplit("/", 1)[1]
        for bad in (token[:-1] + ("A" if token[-1] != "A" else "B"), "x", "x" * 500):
            page = self.client.get(
                reverse("integrations:access_review", kwargs={"link": bad})
            )
            assert page.status_code == 404
            assert "not valid" in page.text

    def test_the_link_expires_with_the_review(self) -> None:
        later = self.review.due_at + LINK_MARGIN + DAY
        with mock.patch("django.utils.timezone.now", return_value=later):
            page = self.client.get(self.path)
        assert page.status_code == 410
        assert "expired" in page.text
        AccessReview.objects.filter(pk=self.review.pk).update(
            state=AccessReview.State.CANCELLED
        )
        assert self.client.get(self.path).status_code == 410

    def test_a_form_without_its_csrf_token_is_refused(self) -> None:
        answer = self.client.post(
            self.path, {"remove": self.ids("ann@hospital.example")}
        )
        assert answer.status_code == 403
        assert ApprovedUser.objects.filter(server=self.server).count() == 3

    def test_garbage_is_refused_naming_the_value_and_nothing_is_written(
        self,
    ) -> None:
        _, csrf = self.open_page()
        cases = [
            ({"remove": ["ann"]}, "“ann” is not one of the listed approvals"),
            ({"remove": ["9" * 40]}, "is not one of the listed approvals"),
            ({"remove": ["-1"]}, "“-1”"),
            ({"note": "x" * 2001}, "2,001 characters"),
            ({"note": "bad\x00note"}, "control character"),
        ]
        for data, message in cases:
            answer = self.client.post(
                self.path,
                {"csrfmiddlewaretoken": csrf, **data, "remove_ok": "1"},
            )
            assert answer.status_code == 400, data
            assert message in answer.text, (data, answer.text)
        assert ApprovedUser.objects.filter(server=self.server).count() == 3
        self.review.refresh_from_db()
        assert self.review.state == AccessReview.State.SENT

    def test_more_fields_than_django_takes_is_refused_not_a_500(self) -> None:
        """Past the field limit, nothing is written."""
        _, csrf = self.open_page()
        too_many = settings.DATA_UPLOAD_MAX_NUMBER_FIELDS + 1
        answer = self.client.post(
            self.path,
            {"csrfmiddlewaretoken": csrf, "remove": [str(n) for n in range(too_many)]},
        )
        # 100,001 fields are more than the public pages' 1 MiB: refused by
        # size first, with the review's own advice.
        assert answer.status_code == 413
        assert "mark fewer emails for removal" in answer.text
        # The review's own page, not the onboarding form's way back.
        assert 'id="review-refused"' in answer.text
        assert "Back to the form" not in answer.text
        assert ApprovedUser.objects.filter(server=self.server).count() == 3

    def test_more_fields_than_the_limit_in_a_small_body_says_so(self) -> None:
        """Short fields pass the body-size limit and meet Django's field limit:
        a 400 that says what was wrong, and nothing written."""
        _, csrf = self.open_page()
        too_many = settings.DATA_UPLOAD_MAX_NUMBER_FIELDS + 1
        body = f"csrfmiddlewaretoken={csrf}&" + "&".join(["remove=1"] * too_many)
        answer = self.client.post(
            self.path, body, content_type="application/x-www-form-urlencoded"
        )
        assert answer.status_code == 400
        assert f"more than {settings.DATA_UPLOAD_MAX_NUMBER_FIELDS:,} fields" in (
            answer.text
        )
        assert ApprovedUser.objects.filter(server=self.server).count() == 3

    def test_ids_of_another_servers_approvals_are_ignored(self) -> None:
        other = make_server(make_institution("Other"), emails=["zed@other.example"])
        _, csrf = self.open_page()
        theirs = str(ApprovedUser.objects.get(server=other).pk)
        self.client.post(self.path, {"csrfmiddlewaretoken": csrf, "remove": [theirs]})
        assert ApprovedUser.objects.filter(server=other).exists()

    def test_a_removal_that_fails_writes_nothing(self) -> None:
        _, csrf = self.open_page()
        with (
            mock.patch(
                "integrations.registry.record_bulk_deletion",
                side_effect=RuntimeError("disk full"),
            ),
            self.assertRaises(RuntimeError),
        ):
            self.client.post(
                self.path,
                {
                    "csrfmiddlewaretoken": csrf,
                    "remove": self.ids("ann@hospital.example"),
                },
            )
        assert ApprovedUser.objects.filter(server=self.server).count() == 3
        self.review.refresh_from_db()
        assert self.review.state == AccessReview.State.SENT


@override_settings(**REVIEW_SETTINGS)
class LargeListTests(TestCase):
    def test_thousands_of_emails_cost_the_same_queries_as_three(self) -> None:
        small = reviewed_server(["a@one.example", "b@one.example"], name="Small")
        emails = [f"user{n:05d}@big.example" for n in range(3000)]
        big = reviewed_server(emails, name="Big")
        links = {}
        for server in (small, big):
            flows.start_review(server, "staff")
            links[server.pk] = link_in(review_mails()[-1])
        with self.assertNumQueries(3):
            self.client.get(links[small.pk])
        with self.assertNumQueries(3):
            page = self.client.get(links[big.pk])
        assert page.status_code == 200
        assert page.text.count('name="remove"') == 3000
        # About 400 bytes an email: light enough for a phone.
        assert len(page.content) < 3000 * 450

    def test_one_answer_removes_thousands_of_emails(self) -> None:
        """Django's default of 1,000 form fields would refuse this answer."""
        emails = [f"user{n:05d}@big.example" for n in range(2500)]
        server = reviewed_server(emails, name="Big")
        flows.start_review(server, "staff")
        client = Client(enforce_csrf_checks=True)
        path = link_in(review_mails()[-1])
        page = client.get(path)
        csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
        assert csrf
        marked = list(
            ApprovedUser.objects.filter(server=server)
            .order_by("email")
            .values_list("pk", flat=True)[:2000]
        )
        answer = client.post(
            path, {"csrfmiddlewaretoken": csrf.group(1), "remove": marked}
        )
        assert answer.status_code == 200, answer.text[:500]
        assert "2000 removed" in answer.text
        kept = ApprovedUser.objects.filter(server=server)
        assert kept.count() == 500
        assert not kept.filter(pk__in=marked).exists()


@override_settings(**REVIEW_SETTINGS)
class OverdueTests(TestCase):
    def setUp(self) -> None:
        self.server = reviewed_server()
        self.review = flows.start_review(self.server, "staff").review
        mail.outbox.clear()

    def staff_mails(self) -> list[mail.EmailMessage]:
        return [m for m in mail.outbox if "overdue" in m.subject]

    def test_an_unanswered_review_is_overdue_after_the_grace_with_one_alert(
        self,
    ) -> None:
        assert flows.mark_overdue(self.review.due_at - DAY) == []
        found = flows.mark_overdue(self.review.due_at + DAY)
        assert [item.review.pk for item in found] == [self.review.pk]
        self.review.refresh_from_db()
        assert self.review.state == AccessReview.State.OVERDUE
        (alert,) = self.staff_mails()
        assert alert.to == ["oncall@pacsbin.example"]
        assert alert.subject.startswith("[Pacsbin Integrations] 1 access review")
        assert "Hospital" in alert.body and CONTACT in alert.body
        assert flows.mark_overdue(self.review.due_at + 2 * DAY) == []
        assert len(self.staff_mails()) == 1
        # Unenforced, nothing expires; the link works a while longer.
        assert not ApprovedUser.objects.filter(expires_at__isnull=False).exists()
        assert flows.is_answerable(self.review, self.review.due_at + 2 * DAY)
        flows.mark_overdue(self.review.link_expires_at + DAY)
        self.review.refresh_from_db()
        assert self.review.state == AccessReview.State.EXPIRED

    @override_settings(ACCESS_REVIEW_ENFORCE=True)
    def test_enforced_the_unreviewed_approvals_expire_in_the_history(self) -> None:
        assert DicomWebServer.objects.approved_for("ann@hospital.example")
        # The access answer compares with the database's clock: the grace
        # ran out a day ago.
        AccessReview.objects.filter(pk=self.review.pk).update(
            due_at=timezone.now() - DAY
        )
        # Approved after the review was sent: not part of its question.
        (newcomer,) = approve(self.server, "new@hospital.example")
        when = timezone.now()
        with mock.patch("django.utils.timezone.now", return_value=when):
            (item,) = flows.mark_overdue(when)
        assert item.expired == 2
        self.review.refresh_from_db()
        assert self.review.state == AccessReview.State.EXPIRED
        assert set(
            ApprovedUser.objects.exclude(pk=newcomer.pk).values_list(
                "expires_at", flat=True
            )
        ) == {when}
        newcomer.refresh_from_db()
        assert newcomer.expires_at is None
        changes = ApprovedUser.history.filter(history_type="~")
        assert changes.count() == 2
        assert {c.history_actor for c in changes} == {flows.ENFORCE_ACTOR}
        assert "2 approval(s) expired" in self.staff_mails()[0].body
        assert not DicomWebServer.objects.approved_for("ann@hospital.example")


@override_settings(**REVIEW_SETTINGS)
class StaffStartTests(TestCase):
    def setUp(self) -> None:
        self.server = reviewed_server()
        self.url = f"/api/v1/servers/{self.server.pk}/access-review"

    def test_without_credentials_401(self) -> None:
        assert self.client.post(self.url).status_code == 401
        assert not AccessReview.objects.exists()

    def test_an_access_key_403(self) -> None:
        _, raw = api_key("uploader", "access")
        assert self.client.post(self.url, **key_header(raw)).status_code == 403
        assert not AccessReview.objects.exists()

    def test_a_manage_key_201_then_409_while_open(self) -> None:
        _, raw = api_key("ops", "manage")
        answer = self.client.post(self.url, **key_header(raw))
        assert answer.status_code == 201, answer.content
        body = answer.json()
        review = AccessReview.objects.get()
        assert body["id"] == review.pk
        assert body["server"] == self.server.pk
        assert body["state"] == "sent"
        assert body["sent_to"] == CONTACT
        assert body["started_by"] == "api-key:ops"
        assert len(review_mails()) == 1
        again = self.client.post(self.url, **key_header(raw))
        assert again.status_code == 409
        assert "already has an open access review" in again.json()["detail"]

    def test_an_unknown_server_404_and_no_contact_409(self) -> None:
        _, raw = api_key("ops", "manage")
        missing = self.client.post(
            "/api/v1/servers/999999/access-review", **key_header(raw)
        )
        assert missing.status_code == 404
        lone = make_server(make_institution("No contact"), name="Lone PACS")
        refused = self.client.post(
            f"/api/v1/servers/{lone.pk}/access-review", **key_header(raw)
        )
        assert refused.status_code == 409
        assert "“Lone PACS” has no confirmed contact" in refused.json()["detail"]
        assert not AccessReview.objects.exists()

    def test_the_admin_action_starts_one_for_staff_allowed_to(self) -> None:
        user = get_user_model().objects.create_user(
            "desk", "desk@pacsbin.example", "pw", is_staff=True
        )
        user.user_permissions.add(
            *Permission.objects.filter(
                codename__in=["view_dicomwebserver", "change_dicomwebserver"]
            )
        )
        self.client.force_login(user)
        changelist = reverse("admin:integrations_dicomwebserver_changelist")
        data = {"action": "start_access_review", "_selected_action": [self.server.pk]}
        self.client.post(changelist, data)
        assert not AccessReview.objects.exists(), "needs add_accessreview"
        user.user_permissions.add(Permission.objects.get(codename="add_accessreview"))
        user = get_user_model().objects.get(pk=user.pk)
        self.client.force_login(user)
        answer = self.client.post(changelist, data, follow=True)
        assert "sent to it.contact@hospital.example" in answer.text
        assert AccessReview.objects.get().started_by == "desk"

    def test_the_review_list_shows_state_and_filters(self) -> None:
        flows.start_review(self.server, "staff")
        admin = get_user_model().objects.create_superuser("boss", "b@x.example", "pw")
        self.client.force_login(admin)
        page = self.client.get(
            reverse("admin:integrations_accessreview_changelist") + "?state=sent"
        )
        assert page.status_code == 200
        assert CONTACT in page.text
        servers = self.client.get(
            reverse("admin:integrations_dicomwebserver_changelist")
            + "?access_review=sent"
        )
        assert self.server.name in servers.text
