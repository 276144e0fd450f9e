"""approve_request / reject_request: one transaction, audited under the
reviewer's name, clean refusals, nothing half-written."""

from __future__ import annotations

from unittest import mock

from django.contrib.auth import get_user_model
from django.core import mail
from django.test import TestCase, TransactionTestCase

from integrations import registry
from integrations.models import (
    ApprovedUser,
    DicomWebServer,
    Institution,
    OnboardingRequest,
)
from integrations.onboarding import (
    ReviewError,
    approve_request,
    lifecycle,
    reject_request,
)
from tests.factories import (
    submitted_request,
    update_request_for,
)


def registry_snapshot() -> tuple:
    return (
        list(Institution.objects.values_list("name", "contact_email", "updated_at")),
        list(
            DicomWebServer.objects.values_list(
                "name", "qido_url", "status", "updated_at"
            )
        ),
        sorted(ApprovedUser.objects.values_list("server_id", "email")),
        Institution.history.count(),
        DicomWebServer.history.count(),
        ApprovedUser.history.count(),
    )


class ApprovingANewServer(TestCase):
    @classmethod
    def setUpTestData(cls) -> None:
        cls.reviewer = get_user_model().objects.create_user(
            "reviewer", "reviewer@pacsbin.example", is_staff=True
        )

    def test_it_creates_institution_server_and_approvals(self) -> None:
        r = submitted_request()
        result = approve_request(r, self.reviewer)
        self.assertTrue(result.created_institution)
        self.assertTrue(result.created_server)
        server = DicomWebServer.objects.get()
        self.assertEqual(server.institution.name, "St. Example Hospital")
        self.assertEqual(server.institution.contact_email, "pat.admin@st-example.org")
        self.assertEqual(server.status, "active")
        self.assertEqual(server.cors_mode, "reverse_proxy")
        self.assertEqual(
            sorted(server.approved_users.values_list("email", flat=True)),
            ["ann@st-example.org", "bob@st-example.org"],
        )
        r.refresh_from_db()
        self.assertEqual(r.status, "approved")
        self.assertEqual(r.reviewer, self.reviewer)
        self.assertIsNotNone(r.reviewed_at)
        self.assertEqual((r.institution, r.server), (server.institution, server))

    def test_the_audit_history_names_the_reviewer(self) -> None:
        approve_request(submitted_request(), self.reviewer)
        for history in (
            Institution.history.get(),
            DicomWebServer.history.get(),
            *ApprovedUser.history.all(),
        ):
            self.assertEqual(history.history_actor, "reviewer")
            self.assertEqual(history.history_user, self.reviewer)

    def test_the_emails_reach_the_uploader_only_after_approval(self) -> None:
        r = submitted_request()
        self.assertEqual(
            list(DicomWebServer.objects.approved_for("ann@st-example.org")), []
        )
        approve_request(r, self.reviewer)
        servers = list(DicomWebServer.objects.approved_for("ANN@st-example.org"))
        self.assertEqual([s.name for s in servers], ["Main PACS"])

    def test_kept_pending_the_server_is_not_given_to_the_uploader(self) -> None:
        approve_request(submitted_request(), self.reviewer, activate=False)
        self.assertEqual(DicomWebServer.objects.get().status, "pending")
        self.assertEqual(
            list(DicomWebServer.objects.approved_for("ann@st-example.org")), []
        )

    def test_the_contact_is_told_with_their_status_link(self) -> None:
        r = submitted_request()
        with self.captureOnCommitCallbacks(execute=True):
            approve_request(r, self.reviewer, site_url="https://registry.example")
        self.assertEqual(len(mail.outbox), 1)
        self.assertEqual(mail.outbox[0].to, ["pat.admin@st-example.org"])
        self.assertIn("approved", mail.outbox[0].subject)
        self.assertIn(
            "https://registry.example/onboarding/status/", mail.outbox[0].body
        )

    def test_an_existing_institution_gets_the_new_server_and_keeps_its_contact(
        self,
    ) -> None:
        existing = Institution.objects.create(
            name="st. example HOSPITAL", contact_email="it@st-example.org"
        )
        result = approve_request(submitted_request(), self.reviewer)
        self.assertFalse(result.created_institution)
        self.assertEqual(result.server.institution, existing)
        existing.refresh_from_db()
        self.assertEqual(existing.contact_email, "it@st-example.org")
        self.assertEqual(Institution.objects.count(), 1)

    def test_a_server_name_already_taken_is_refused_cleanly(self) -> None:
        institution = Institution.objects.create(name="St. Example Hospital")
        DicomWebServer.objects.create(
            institution=institution,
            name="MAIN pacs",
            qido_url="https://a.example/dicomweb",
            wado_url="https://a.example/dicomweb",
        )
        before = registry_snapshot()
        r = submitted_request()
        with self.assertRaisesMessage(ReviewError, "already has a server named"):
            approve_request(r, self.reviewer)
        self.assertEqual(registry_snapshot(), before)
        r.refresh_from_db()
        self.assertEqual(r.status, "submitted")


class ApprovingWhileSomeoneElseCreatesTheSameInstitution(TransactionTestCase):
    def test_the_database_refusal_becomes_a_clear_message_and_nothing_is_written(
        self,
    ) -> None:
        reviewer = get_user_model().objects.create_user("reviewer", is_staff=True)
        r = submitted_request()
        Institution.objects.create(name="ST. EXAMPLE HOSPITAL")
        before = registry_snapshot()
        # The lookup ran before the other insert committed: it saw nothing.
        with (
            mock.patch.object(lifecycle, "institution_named", return_value=None),
            self.assertRaisesMessage(
                ReviewError, "An institution named “St. Example Hospital” already"
            ),
        ):
            approve_request(r, reviewer)
        self.assertEqual(registry_snapshot(), before)
        r.refresh_from_db()
        self.assertEqual(r.status, "submitted")


class RefusingCleanly(TestCase):
    @classmethod
    def setUpTestData(cls) -> None:
        User = get_user_model()
        cls.reviewer = User.objects.create_user("reviewer", is_staff=True)
        cls.other = User.objects.create_user("other", is_staff=True)

    def test_approving_twice_says_who_did_it_and_writes_nothing(self) -> None:
        r = submitted_request()
        approve_request(r, self.reviewer)
        before = registry_snapshot()
        with self.assertRaisesMessage(ReviewError, "already approved by reviewer"):
            approve_request(r, self.other)
        self.assertEqual(registry_snapshot(), before)
        r.refresh_from_db()
        self.assertEqual(r.reviewer, self.reviewer)

    def test_a_rejected_request_cannot_be_approved(self) -> None:
        r = submitted_request()
        reject_request(r, self.reviewer, "Not a hospital.")
        with self.assertRaisesMessage(ReviewError, "already rejected"):
            approve_request(r, self.other)
        self.assertEqual(DicomWebServer.objects.count(), 0)

    def test_a_failure_mid_approval_leaves_the_registry_untouched(self) -> None:
        r = submitted_request()
        before = registry_snapshot()
        # The last registry step fails after the institution, server and
        # approvals were already written inside the transaction.
        with (
            mock.patch.object(
                registry, "remove_approved_users", side_effect=RuntimeError("disk full")
            ),
            self.assertRaisesMessage(RuntimeError, "disk full"),
        ):
            approve_request(r, self.reviewer)
        self.assertEqual(registry_snapshot(), before)
        self.assertEqual(Institution.objects.count(), 0)
        r.refresh_from_db()
        self.assertEqual(r.status, "submitted")
        self.assertIsNone(r.reviewer)

    def test_rejecting_needs_a_reason_and_tells_the_contact(self) -> None:
        r = submitted_request()
        with self.assertRaisesMessage(ReviewError, "Give a reason"):
            reject_request(r, self.reviewer, "   ")
        with self.captureOnCommitCallbacks(execute=True):
            reject_request(r, self.reviewer, "The URL points at a test system.")
        r.refresh_from_db()
        self.assertEqual(
            (r.status, r.reason), ("rejected", "The URL points at a test system.")
        )
        self.assertEqual(mail.outbox[-1].to, ["pat.admin@st-example.org"])
        self.assertIn("The URL points at a test system.", mail.outbox[-1].body)
        self.assertEqual(DicomWebServer.objects.count(), 0)


class ApprovingAnUpdate(TestCase):
    @classmethod
    def setUpTestData(cls) -> None:
        cls.reviewer = get_user_model().objects.create_user("reviewer", is_staff=True)

    def setUp(self) -> None:
        self.server = approve_request(submitted_request(), self.reviewer).server

    def test_it_changes_the_live_server_and_its_approvals(self) -> None:
        r = update_request_for(
            self.server,
            qido_url="https://new.st-example.org/dicomweb",
            wado_url="https://new.st-example.org/wado",
            needs_credentials=True,
            emails_to_add=["carol@st-example.org", "ann@st-example.org"],
            emails_to_remove=["bob@st-example.org", "nobody@st-example.org"],
        )
        self.assertEqual(
            DicomWebServer.objects.get().qido_url,
            "https://pacs.st-example.org/dicomweb",
        )
        result = approve_request(r, self.reviewer)
        self.server.refresh_from_db()
        self.assertEqual(self.server.qido_url, "https://new.st-example.org/dicomweb")
        self.assertEqual(self.server.wado_url, "https://new.st-example.org/wado")
        self.assertTrue(self.server.needs_credentials)
        self.assertEqual(self.server.status, "active")
        self.assertEqual(
            sorted(self.server.approved_users.values_list("email", flat=True)),
            ["ann@st-example.org", "carol@st-example.org"],
        )
        self.assertEqual(result.added, ["carol@st-example.org"])
        self.assertEqual(result.existing, ["ann@st-example.org"])
        self.assertEqual(result.removed, ["bob@st-example.org"])
        self.assertEqual(
            sorted(result.changed_fields),
            ["Needs browser credentials", "QIDO URL", "WADO URL"],
        )
        self.assertEqual(DicomWebServer.history.latest().history_actor, "reviewer")

    def test_an_update_never_changes_a_suspended_servers_status(self) -> None:
        registry.set_status(DicomWebServer.objects.all(), "suspended")
        self.server.refresh_from_db()
        r = update_request_for(self.server, server_name="Renamed PACS")
        approve_request(r, self.reviewer)
        self.server.refresh_from_db()
        self.assertEqual(
            (self.server.name, self.server.status), ("Renamed PACS", "suspended")
        )

    def test_a_server_changed_since_submission_is_refused_and_nothing_written(
        self,
    ) -> None:
        r = update_request_for(
            self.server,
            qido_url="https://new.st-example.org/dicomweb",
            emails_to_add=["carol@st-example.org"],
        )
        self.server.notes = "Edited by a staffer meanwhile"
        self.server.save()
        before = registry_snapshot()
        with self.assertRaisesMessage(
            ReviewError, "was changed after this request was sent"
        ):
            approve_request(r, self.reviewer)
        self.assertEqual(registry_snapshot(), before)
        r.refresh_from_db()
        self.assertEqual(r.status, "submitted")

    def test_an_institution_changed_since_submission_is_refused(self) -> None:
        r = update_request_for(self.server, contact_name="New Contact")
        institution = self.server.institution
        institution.notes = "changed"
        institution.save()
        with self.assertRaisesMessage(
            ReviewError, "institution “St. Example Hospital” was changed"
        ):
            approve_request(r, self.reviewer)

    def test_a_deleted_server_is_refused(self) -> None:
        r = update_request_for(self.server, server_name="Renamed")
        self.server.delete()
        r.refresh_from_db()
        with self.assertRaisesMessage(ReviewError, "has been deleted"):
            approve_request(r, self.reviewer)

    def test_an_emails_only_update_does_not_make_a_sibling_update_stale(self) -> None:
        first = update_request_for(self.server, emails_to_add=["carol@st-example.org"])
        second = update_request_for(self.server, server_name="Renamed PACS")
        approve_request(first, self.reviewer)
        approve_request(second, self.reviewer)
        self.server.refresh_from_db()
        self.assertEqual(self.server.name, "Renamed PACS")
        self.assertEqual(self.server.approved_users.count(), 3)

    def test_the_request_stays_as_sent(self) -> None:
        r = update_request_for(self.server, server_name="Renamed PACS")
        approve_request(r, self.reviewer)
        r.refresh_from_db()
        self.assertEqual(r.kind, OnboardingRequest.Kind.UPDATE)
        self.assertEqual(r.baseline["server.name"], "Main PACS")
