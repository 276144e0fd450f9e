"""The "Approve emails" paste box on the admin server page."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.test import TestCase
from django.utils import timezone

from integrations.models import ApprovedUser
from tests.factories import approve, make_institution, make_server


class PasteTestCase(TestCase):
    @classmethod
    def setUpTestData(cls) -> None:
        cls.staff = get_user_model().objects.create_superuser(
            "staff", "s@example.org", "pw-long-enough-1"
        )
        cls.server = make_server(make_institution(), "Main PACS")

    def setUp(self) -> None:
        self.client.force_login(self.staff)

    def post(self, pasted: str, lasts: str = "") -> Any:
        server = self.server
        return self.client.post(
            f"/admin/integrations/dicomwebserver/{server.pk}/change/",
            {
                "institution": server.institution_id,
                "name": server.name,
                "qido_url": server.qido_url,
                "wado_url": server.wado_url,
                "status": server.status,
                "cors_mode": server.cors_mode,
                "add_emails": pasted,
                "access_lasts": lasts,
            },
            follow=True,
        )

    def emails(self) -> list[str]:
        return sorted(
            ApprovedUser.objects.filter(server=self.server).values_list(
                "email", flat=True
            )
        )


class PasteBoxTests(PasteTestCase):
    def test_all_good_lines_are_approved_with_duplicates_folded(self) -> None:
        response = self.post(
            "jane@university.edu\n"
            "John@University.edu, jane@UNIVERSITY.edu; amy@university.edu"
        )
        self.assertContains(response, "Approved 3 new email(s).")
        assert self.emails() == [
            "John@university.edu",
            "amy@university.edu",
            "jane@university.edu",
        ]

    def test_already_approved_emails_are_reported_not_duplicated(self) -> None:
        approve(self.server, "jane@university.edu")
        response = self.post("Jane@university.edu\nnew@university.edu")
        self.assertContains(response, "Approved 1 new email(s).")
        self.assertContains(response, "Already approved (1): Jane@university.edu")
        assert self.emails() == ["jane@university.edu", "new@university.edu"]

    def test_all_bad_lines_are_reported_and_nothing_is_written(self) -> None:
        response = self.post("not-an-email\njane@")
        assert response.status_code == 200
        self.assertContains(
            response, "Line 1: “not-an-email” is not a valid email address"
        )
        self.assertContains(response, "Line 2: “jane@” is not a valid email address")
        assert self.emails() == []

    def test_one_bad_line_among_good_ones_writes_nothing_and_names_it(self) -> None:
        response = self.post(
            "a@university.edu\nb@university.edu\nc@@university.edu\nd@university.edu"
        )
        self.assertContains(response, "Line 3: “c@@university.edu”")
        self.assertNotContains(response, "Line 1")
        assert self.emails() == []

    def test_a_bad_paste_also_leaves_the_server_fields_unchanged(self) -> None:
        server = self.server
        self.client.post(
            f"/admin/integrations/dicomwebserver/{server.pk}/change/",
            {
                "institution": server.institution_id,
                "name": "Renamed",
                "qido_url": server.qido_url,
                "wado_url": server.wado_url,
                "status": server.status,
                "cors_mode": server.cors_mode,
                "add_emails": "oops",
            },
        )
        server.refresh_from_db()
        assert server.name == "Main PACS"


class AccessLastsTests(PasteTestCase):
    """The paste box's "Access lasts" choice."""

    def ends(self) -> dict[str, Any]:
        return dict(
            ApprovedUser.objects.filter(server=self.server).values_list(
                "email", "expires_at"
            )
        )

    def test_pasted_emails_last_the_chosen_days(self) -> None:
        before = timezone.now()
        response = self.post("jane@university.edu\namy@university.edu", "90")
        self.assertContains(response, "Approved 2 new email(s), until ")
        for end in self.ends().values():
            assert end is not None
            self.assertAlmostEqual((end - before).total_seconds(), 90 * 86400, delta=60)

    def test_no_end_is_the_default(self) -> None:
        self.post("jane@university.edu")
        assert self.ends() == {"jane@university.edu": None}

    def test_an_already_approved_email_gets_the_new_end(self) -> None:
        approve(self.server, "jane@university.edu")
        response = self.post("Jane@university.edu", "30")
        self.assertContains(
            response, "Access of 1 already approved email(s) now lasts until"
        )
        assert self.ends()["jane@university.edu"] is not None
        history = ApprovedUser.history.filter(history_type="~").get()
        assert history.history_user == self.staff
        self.post("Jane@university.edu", "")
        assert self.ends()["jane@university.edu"] is None

    def test_a_choice_not_offered_is_refused_and_nothing_is_written(self) -> None:
        response = self.post("jane@university.edu", "99999")
        self.assertContains(response, "Select a valid choice. 99999")
        assert self.ends() == {}

    def test_the_choice_is_on_the_server_page(self) -> None:
        response = self.client.get(
            f"/admin/integrations/dicomwebserver/{self.server.pk}/change/"
        )
        self.assertContains(response, "Access lasts")
        self.assertContains(response, '<option value="365">365 days</option>')


class ExpiryListTests(TestCase):
    """The approved users' list by end, and the index's "ending soon"."""

    @classmethod
    def setUpTestData(cls) -> None:
        cls.staff = get_user_model().objects.create_superuser(
            "staff", "s@example.org", "pw-long-enough-1"
        )
        server = make_server(make_institution(), "Main PACS")
        now = timezone.now()
        for email, end in [
            ("soon@x.example", now + timedelta(days=3)),
            ("later@x.example", now + timedelta(days=30)),
            ("ended@x.example", now - timedelta(days=1)),
            ("never@x.example", None),
        ]:
            row = approve(server, email)[0]
            row.expires_at = end
            row.save()

    def setUp(self) -> None:
        self.client.force_login(self.staff)

    def listed(self, query: str) -> list[str]:
        response = self.client.get(f"/admin/integrations/approveduser/?{query}")
        assert response.status_code == 200
        return sorted(row.email for row in response.context["cl"].result_list)

    def test_each_filter_lists_its_approvals(self) -> None:
        assert self.listed("expiry=soon") == ["soon@x.example"]
        assert self.listed("expiry=dated") == ["later@x.example", "soon@x.example"]
        assert self.listed("expiry=ended") == ["ended@x.example"]
        assert self.listed("expiry=never") == ["never@x.example"]

    def test_an_unknown_filter_value_is_no_500(self) -> None:
        response = self.client.get("/admin/integrations/approveduser/?expiry=%00x")
        assert response.status_code in (200, 302)

    def test_the_index_counts_approvals_ending_soon_and_links_the_list(self) -> None:
        response = self.client.get("/admin/")
        self.assertContains(response, "<strong>1</strong> approval ending within 7")
        self.assertContains(
            response, 'href="/admin/integrations/approveduser/?expiry=soon"'
        )

    def test_staff_without_the_view_permission_do_not_see_it(self) -> None:
        clerk = get_user_model().objects.create_user(
            "clerk", password="pw", is_staff=True
        )
        self.client.force_login(clerk)
        self.assertNotContains(self.client.get("/admin/"), "ending within")

    def test_changing_an_end_on_its_page_clears_the_notice_and_refuses_the_past(
        self,
    ) -> None:
        row = ApprovedUser.objects.get(email="soon@x.example")
        ApprovedUser.objects.filter(pk=row.pk).update(expiry_notified_at=timezone.now())
        url = f"/admin/integrations/approveduser/{row.pk}/change/"
        data = {"server": row.server_id, "email": row.email}
        response = self.client.post(
            url, {**data, "expires_at_0": "2001-01-01", "expires_at_1": "10:00"}
        )
        self.assertContains(response, "2001-01-01 10:00 is in the past")
        later = timezone.now() + timedelta(days=60)
        response = self.client.post(
            url,
            {
                **data,
                "expires_at_0": f"{later:%Y-%m-%d}",
                "expires_at_1": f"{later:%H:%M:%S}",
            },
        )
        assert response.status_code == 302
        row.refresh_from_db()
        assert row.expiry_notified_at is None
        assert row.expires_at is not None
        assert row.expires_at.date() == later.date()
