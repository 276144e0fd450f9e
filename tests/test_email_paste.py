"""Pasted email lists as people paste them: from a mail program's address
line (``Name <address>``, quoted names with commas) as well as bare."""

from __future__ import annotations

import re

from django.contrib.auth import get_user_model
from django.test import SimpleTestCase, TestCase

from integrations.models import ApprovedUser, OnboardingRequest
from integrations.validators import count_email_entries, parse_email_list
from tests.factories import make_institution, make_server
from tests.onboarding_helpers import FORM_URL, FreshRateLimit, form_data

OUTLOOK = (
    'Jane Doe <jane@uni.edu>; "Roe, John" <John.Roe@UNI.edu>\n'
    "amy@uni.edu, Jane <JANE@uni.edu>\n"
)


class ParsingTests(SimpleTestCase):
    def test_an_address_line_gives_its_addresses_and_drops_the_names(self) -> None:
        parsed = parse_email_list(OUTLOOK)
        assert parsed.emails == ["jane@uni.edu", "John.Roe@uni.edu", "amy@uni.edu"]
        assert parsed.errors == []
        assert parsed.duplicates == 1

    def test_a_comma_inside_a_quoted_name_does_not_split_the_entry(self) -> None:
        assert count_email_entries(OUTLOOK) == 4

    def test_a_bad_address_in_brackets_is_reported_by_line(self) -> None:
        parsed = parse_email_list("ok@uni.edu\nBad Guy <not-an-address>")
        assert parsed.emails == ["ok@uni.edu"]
        assert [(line, value) for line, value, _ in parsed.errors] == [
            (2, "not-an-address")
        ]
        assert "not-an-address" in parsed.error_messages()[0]

    def test_text_after_the_brackets_is_not_an_address(self) -> None:
        parsed = parse_email_list("Jane <jane@uni.edu> extra")
        assert parsed.emails == []
        assert "Jane <jane@uni.edu> extra" in parsed.error_messages()[0]


class AdminPasteTests(TestCase):
    def test_the_admin_box_takes_an_address_line(self) -> None:
        staff = get_user_model().objects.create_superuser(
            "staff", "s@example.org", "pw-long-enough-1"
        )
        server = make_server(make_institution(), "Main PACS")
        self.client.force_login(staff)
        response = self.client.post(
            f"/admin/integrations/dicomwebserver/{server.pk}/change/",
            {
                "institution": server.institution_id,
                "name": server.name,
                "qido_url": server.qido_url,
                "wado_url": server.wado_url,
                "status": server.status,
                "cors_mode": server.cors_mode,
                "add_emails": OUTLOOK,
            },
            follow=True,
        )
        self.assertContains(response, "Approved 3 new email(s).")
        assert sorted(
            ApprovedUser.objects.filter(server=server).values_list("email", flat=True)
        ) == ["John.Roe@uni.edu", "amy@uni.edu", "jane@uni.edu"]


class PublicFormPasteTests(FreshRateLimit, TestCase):
    def test_the_public_form_takes_an_address_line(self) -> None:
        response = self.client.post(FORM_URL, form_data(emails=OUTLOOK))
        assert response.status_code == 302
        assert OnboardingRequest.objects.get().emails_to_add == [
            "jane@uni.edu",
            "John.Roe@uni.edu",
            "amy@uni.edu",
        ]


class LabelTests(FreshRateLimit, TestCase):
    def test_fields_required_in_their_branch_are_not_marked_optional(self) -> None:
        html = self.client.get(FORM_URL).content.decode()
        for field in (
            "qido_url",
            "proxy_url",
            "archive_ae_title",
            "archive_host",
            "archive_port",
            "proxy_ae_title",
            "proxy_dimse_port",
        ):
            label = re.search(rf'<label for="id_{field}">(.*?)</label>', html, re.S)
            assert label, field
            assert "optional" not in label.group(1), (field, label.group(1))
        notes = re.search(r'<label for="id_notes">(.*?)</label>', html, re.S)
        assert notes and "(optional)" in notes.group(1)
