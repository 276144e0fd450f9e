"""The server's admin page: its first part answers "who may use it, and is it
healthy?" (status, health, approved users with the approve box and its own
Save, the gate, "What does this email see?"); errors land on their field.
tests/test_screens_browser.py measures the same page in Chromium."""

from __future__ import annotations

import re
from typing import Any

from django.contrib.auth import get_user_model
from django.test import TestCase
from django.utils import timezone

from integrations.models import ApprovedUser, DicomWebServer, EdgeUsage
from tests.factories import approve, make_institution, make_server
from tests.test_permissions import staffer

LOOKUP = "/admin/integrations/approveduser/lookup/"


def page_url(server: DicomWebServer) -> str:
    return f"/admin/integrations/dicomwebserver/{server.pk}/change/"


class ServerPageTopTests(TestCase):
    @classmethod
    def setUpTestData(cls) -> None:
        cls.staff = get_user_model().objects.create_superuser(
            "staff", "s@example.org", "pw-long-enough-1"
        )
        cls.server = make_server(make_institution(), "Main PACS")
        approve(cls.server, "jane@university.edu", "john@university.edu")

    def setUp(self) -> None:
        self.client.force_login(self.staff)

    def post(self, **overrides: str) -> Any:
        server = self.server
        data = {
            "institution": server.institution_id,
            "name": server.name,
            "qido_url": server.qido_url,
            "wado_url": server.wado_url,
            "status": server.status,
            "cors_mode": server.cors_mode,
            "add_emails": "",
            **overrides,
        }
        return self.client.post(page_url(server), data)

    def test_the_approve_box_comes_before_the_long_parts(self) -> None:
        html = self.client.get(page_url(self.server)).content.decode()
        glance = html.index("Who may use it, and is it healthy?")
        box = html.index('name="add_emails"')
        for later in ("Endpoints", "Checks (newest first)", "Fix-it configurations"):
            assert glance < box < html.index(later), later
        assert html.index("health") < box
        self.assertInHTML(
            '<button type="submit" name="_continue" '
            'class="button default pi-approve-save">'
            "Save and approve</button>",
            html,
        )
        assert "2 approved" in html
        assert 'id="approve"' in html

    def test_the_paste_help_shows_its_angle_brackets_and_the_duration_comes_first(
        self,
    ) -> None:
        """The admin renders help texts as HTML: a bare "<address>" was a tag
        that ate the words after it."""
        html = self.client.get(page_url(self.server)).content.decode()
        self.assertIn("Name &lt;address&gt; as mail programs copy it", html)
        self.assertNotIn("<address>", html)
        self.assertLess(
            html.index('name="access_lasts"'), html.index('name="add_emails"')
        )

    def test_its_own_save_approves_and_comes_back_to_the_page(self) -> None:
        response = self.post(add_emails="amy@university.edu", _continue="1")
        self.assertRedirects(response, page_url(self.server))
        assert ApprovedUser.objects.filter(
            server=self.server, email="amy@university.edu"
        ).exists()

    def test_a_bad_paste_focuses_the_box_with_the_line_named_beside_it(self) -> None:
        response = self.post(add_emails="not-an-email", _continue="1")
        assert response.status_code == 200
        html = response.content.decode()
        row = re.search(
            r'<div class="form-row errors field-add_emails">(.*?)</textarea>',
            html,
            re.S,
        )
        assert row, "the paste box's row carries its errors"
        assert "“not-an-email” is not a valid email address" in row.group(1)
        assert re.search(r"<textarea[^>]*autofocus[^>]*add_emails", row.group(1))
        assert html.count("autofocus") == 1

    def test_another_fields_error_focuses_that_field_not_the_box(self) -> None:
        html = self.post(qido_url="ftp://nope").content.decode()
        assert re.search(r'<input[^>]*name="qido_url"[^>]*autofocus', html) or (
            re.search(r'<input[^>]*autofocus[^>]*name="qido_url"', html)
        )
        assert html.count("autofocus") == 1

    def test_a_page_without_errors_focuses_nothing(self) -> None:
        self.assertNotContains(self.client.get(page_url(self.server)), "autofocus")

    def test_the_search_and_the_lookup_are_forms_of_their_own(self) -> None:
        html = self.client.get(page_url(self.server)).content.decode()
        self.assertInHTML(
            f'<input type="hidden" name="server__id__exact" value="{self.server.pk}">',
            html,
        )
        assert 'form="pi-user-search"' in html
        assert 'form="pi-email-check"' in html
        assert '<label for="pi-user-q">' in html
        assert '<label for="pi-email-check-input">' in html
        # Not nested in the change form: they come after it closes.
        change_form_end = html.index("</form>", html.index('id="dicomwebserver_form"'))
        assert html.index('id="pi-user-search"') > change_form_end
        assert html.index('id="pi-email-check"') > change_form_end

    def test_the_gate_line_says_enforced_and_when_last_used(self) -> None:
        self.assertContains(self.client.get(page_url(self.server)), "Not enforced")
        DicomWebServer.objects.filter(pk=self.server.pk).update(edge_enforced=True)
        used = timezone.now().replace(microsecond=0)
        EdgeUsage.objects.create(
            server=self.server,
            email="jane@university.edu",
            day=used.date(),
            granted=3,
            last_used_at=used,
        )
        response = self.client.get(page_url(self.server))
        self.assertContains(response, "Enforced")
        self.assertContains(response, f"{used:%Y-%m-%d %H:%M} UTC")


class ServerPagePermissionTests(TestCase):
    @classmethod
    def setUpTestData(cls) -> None:
        cls.server = make_server(make_institution(), "Main PACS")

    def test_a_view_only_staffer_sees_no_approve_box(self) -> None:
        self.client.force_login(
            staffer("viewer", "view_dicomwebserver", "view_approveduser")
        )
        response = self.client.get(page_url(self.server))
        assert response.status_code == 200
        self.assertNotContains(response, "add_emails")
        self.assertNotContains(response, "Save and approve")
        self.assertNotContains(response, "Approve emails")
        # Reading is still allowed: the search and the lookup.
        self.assertContains(response, 'form="pi-user-search"')

    def test_without_view_on_approved_users_no_search_or_lookup(self) -> None:
        self.client.force_login(
            staffer("editor", "view_dicomwebserver", "change_dicomwebserver")
        )
        response = self.client.get(page_url(self.server))
        assert response.status_code == 200
        self.assertContains(response, "Save and approve")
        self.assertContains(response, "0 approved")
        self.assertNotContains(response, 'form="pi-user-search"')
        self.assertNotContains(response, 'form="pi-email-check"')

    def test_posting_a_paste_without_change_permission_writes_nothing(self) -> None:
        self.client.force_login(
            staffer("viewer", "view_dicomwebserver", "view_approveduser")
        )
        response = self.client.post(
            page_url(self.server),
            {"name": "x", "add_emails": "amy@university.edu"},
        )
        assert response.status_code == 403
        assert not ApprovedUser.objects.exists()


class LookupFromTheServerPageTests(TestCase):
    @classmethod
    def setUpTestData(cls) -> None:
        cls.staff = get_user_model().objects.create_superuser(
            "staff", "s@example.org", "pw-long-enough-1"
        )
        institution = make_institution()
        cls.active = make_server(institution, "Main PACS")
        cls.pending = make_server(
            institution, "Research", status=DicomWebServer.Status.PENDING
        )
        approve(cls.active, "jane@university.edu")
        approve(cls.pending, "jane@university.edu")

    def setUp(self) -> None:
        self.client.force_login(self.staff)

    def ask(self, email: str, server: Any) -> Any:
        return self.client.get(LOOKUP, {"email": email, "server": server})

    def test_an_approved_email_may_use_an_active_server(self) -> None:
        response = self.ask(" Jane@University.edu ", self.active.pk)
        self.assertContains(response, "Yes: approved, and the server is active.")
        self.assertContains(response, "Research")  # every server it sees
        self.assertContains(response, f'name="server" value="{self.active.pk}"')

    def test_an_approved_email_waits_for_a_pending_server(self) -> None:
        response = self.ask("jane@university.edu", self.pending.pk)
        self.assertContains(response, "Not now: approved, but the server is pending")

    def test_an_unknown_email_may_not(self) -> None:
        response = self.ask("amy@university.edu", self.active.pk)
        self.assertContains(response, "No: this email is not approved for it.")

    def test_a_bad_server_id_is_named_not_a_500(self) -> None:
        for bad in ("abc", "99999999", "²", "-1"):
            response = self.ask("jane@university.edu", bad)
            assert response.status_code == 200, bad
            self.assertContains(response, "is not a server id.")
            self.assertNotContains(response, "May it use")
