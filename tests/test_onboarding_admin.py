"""Staff review in the admin: the queue, the review page, approve / reject."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.test import Client, TestCase

from integrations.models import DicomWebServer, OnboardingRequest
from integrations.onboarding import approve_request, reject_request
from tests.factories import (
    submitted_request,
    update_request_for,
)

QUEUE = "/admin/integrations/onboardingrequest/"


def review_url(r: OnboardingRequest) -> str:
    return f"{QUEUE}{r.pk}/change/"


class TheQueue(TestCase):
    @classmethod
    def setUpTestData(cls) -> None:
        User = get_user_model()
        cls.staff = User.objects.create_superuser("boss", "boss@pacsbin.example", "pw")
        cls.waiting = submitted_request(institution_name="Waiting Clinic")
        cls.done = submitted_request(institution_name="Done Clinic")
        approve_request(cls.done, cls.staff)
        cls.refused = submitted_request(institution_name="Refused Clinic")
        reject_request(cls.refused, cls.staff, "spam")

    def setUp(self) -> None:
        self.client.force_login(self.staff)

    def test_it_shows_only_requests_waiting_for_review_by_default(self) -> None:
        response = self.client.get(QUEUE)
        self.assertContains(response, "Waiting Clinic")
        self.assertNotContains(response, "Done Clinic")
        self.assertNotContains(response, "Refused Clinic")

    def test_all_and_each_status_can_be_picked(self) -> None:
        everything = self.client.get(QUEUE, {"status": "all"})
        for name in ("Waiting Clinic", "Done Clinic", "Refused Clinic"):
            self.assertContains(everything, name)
        rejected = self.client.get(QUEUE, {"status": "rejected"})
        self.assertContains(rejected, "Refused Clinic")
        self.assertNotContains(rejected, "Waiting Clinic")

    def test_requests_cannot_be_added_by_hand(self) -> None:
        self.assertEqual(self.client.get(f"{QUEUE}add/").status_code, 403)

    def test_anonymous_visitors_are_sent_to_the_login(self) -> None:
        response = Client().get(QUEUE)
        self.assertEqual(response.status_code, 302)
        self.assertIn("/admin/login/", response["Location"])


class TheReviewPage(TestCase):
    @classmethod
    def setUpTestData(cls) -> None:
        User = get_user_model()
        cls.staff = User.objects.create_superuser("boss", "boss@pacsbin.example", "pw")
        cls.viewer = User.objects.create_user("viewer", password="pw", is_staff=True)
        cls.viewer.user_permissions.add(
            Permission.objects.get(codename="view_onboardingrequest")
        )

    def setUp(self) -> None:
        self.client.force_login(self.staff)

    def test_it_shows_what_was_submitted_and_both_buttons(self) -> None:
        r = submitted_request()
        response = self.client.get(review_url(r))
        self.assertContains(response, "https://pacs.st-example.org/dicomweb")
        self.assertContains(response, "ann@st-example.org")
        self.assertContains(response, 'id="approve-button"')
        self.assertContains(response, 'id="reject-button"')
        # Approve, reject, and the admin's own log-out form.
        self.assertContains(response, 'name="csrfmiddlewaretoken"', count=3)

    def test_for_an_update_it_shows_the_differences_against_the_live_server(
        self,
    ) -> None:
        server = approve_request(submitted_request(), self.staff).server
        r = update_request_for(
            server,
            qido_url="https://new.st-example.org/dicomweb",
            emails_to_add=["ann@st-example.org", "dan@st-example.org"],
            emails_to_remove=["bob@st-example.org"],
        )
        html = self.client.get(review_url(r)).content.decode()
        start = html.index('id="differences"')
        table = html[start : html.index("</table>", start)]
        self.assertRegex(
            table,
            r'class="pi-changed"><th scope="row">QIDO URL</th>'
            r"<td>https://pacs.st-example.org/dicomweb</td>"
            r"<td>https://new.st-example.org/dicomweb</td><td><strong>changed",
        )
        self.assertIn(
            '<th scope="row">Server name</th>'
            "<td>Main PACS</td><td>Main PACS</td><td>same",
            table,
        )
        self.assertIn("1</strong> to approve, 1 already approved", html)
        self.assertIn("1</strong> to remove", html)

    def test_a_stale_update_is_flagged_and_its_approve_button_disabled(self) -> None:
        server = approve_request(submitted_request(), self.staff).server
        r = update_request_for(server, server_name="Renamed")
        server.notes = "edited"
        server.save()
        html = self.client.get(review_url(r)).content.decode()
        self.assertIn("was changed after this request was sent", html)
        self.assertRegex(html, r'id="approve-button"\s+disabled')

    def test_a_viewer_without_change_permission_gets_no_buttons_and_cannot_post(
        self,
    ) -> None:
        r = submitted_request()
        self.client.force_login(self.viewer)
        response = self.client.get(review_url(r))
        self.assertEqual(response.status_code, 200)
        self.assertNotContains(response, 'id="approve-button"')
        self.assertEqual(self.client.post(f"{QUEUE}{r.pk}/approve/").status_code, 403)
        self.assertEqual(DicomWebServer.objects.count(), 0)


class DecidingInTheAdmin(TestCase):
    @classmethod
    def setUpTestData(cls) -> None:
        cls.staff = get_user_model().objects.create_superuser(
            "boss", "b@pacsbin.example", "pw"
        )

    def setUp(self) -> None:
        self.client.force_login(self.staff)

    def test_approve_writes_the_registry_and_returns_to_the_queue(self) -> None:
        r = submitted_request()
        response = self.client.post(
            f"{QUEUE}{r.pk}/approve/", {"activate": "on"}, follow=True
        )
        self.assertRedirects(response, QUEUE)
        self.assertContains(response, f"{r.reference} approved")
        server = DicomWebServer.objects.get()
        self.assertEqual(server.status, "active")
        self.assertEqual(DicomWebServer.history.get().history_actor, "boss")

    def test_approve_without_activate_keeps_the_server_pending(self) -> None:
        r = submitted_request()
        self.client.post(f"{QUEUE}{r.pk}/approve/", {})
        self.assertEqual(DicomWebServer.objects.get().status, "pending")

    def test_a_second_approve_shows_a_clear_message(self) -> None:
        r = submitted_request()
        self.client.post(f"{QUEUE}{r.pk}/approve/", {"activate": "on"})
        response = self.client.post(
            f"{QUEUE}{r.pk}/approve/", {"activate": "on"}, follow=True
        )
        self.assertContains(response, "was already approved by boss")
        self.assertEqual(DicomWebServer.objects.count(), 1)

    def test_reject_without_a_reason_is_refused_with_a_message(self) -> None:
        r = submitted_request()
        response = self.client.post(
            f"{QUEUE}{r.pk}/reject/", {"reason": ""}, follow=True
        )
        self.assertContains(response, "Give a reason")
        r.refresh_from_db()
        self.assertEqual(r.status, "submitted")

    def test_reject_with_a_reason(self) -> None:
        r = submitted_request()
        self.client.post(f"{QUEUE}{r.pk}/reject/", {"reason": "Duplicate of OB-2."})
        r.refresh_from_db()
        self.assertEqual(
            (r.status, r.reason, r.reviewer),
            ("rejected", "Duplicate of OB-2.", self.staff),
        )

    def test_deciding_needs_post(self) -> None:
        r = submitted_request()
        self.assertEqual(self.client.get(f"{QUEUE}{r.pk}/approve/").status_code, 405)
        self.assertEqual(self.client.get(f"{QUEUE}{r.pk}/reject/").status_code, 405)
        self.assertEqual(DicomWebServer.objects.count(), 0)

    def test_deciding_needs_the_csrf_token(self) -> None:
        r = submitted_request()
        client = Client(enforce_csrf_checks=True)
        client.force_login(self.staff)
        self.assertEqual(client.post(f"{QUEUE}{r.pk}/approve/").status_code, 403)
        self.assertEqual(DicomWebServer.objects.count(), 0)

    def test_an_unknown_request_is_404(self) -> None:
        self.assertEqual(self.client.post(f"{QUEUE}999999/approve/").status_code, 404)
