"""Bulk adds of institution size go in one all-or-nothing request."""

from __future__ import annotations

import json

from django.test import TestCase

from integrations.models import ApprovedUser, Institution
from tests.api_helpers import (
    key_header,
)
from tests.factories import (
    api_key,
    server,
)

COUNT = 12_000  # more than the old cap of 10,000, and past 2.5 MB of JSON


class BulkAddAtSizeTests(TestCase):
    @classmethod
    def setUpTestData(cls) -> None:
        cls.key, cls.raw = api_key("onboarding-bot", "manage")
        cls.pacs = server(
            Institution.objects.create(name="University Hospital"), "PACS"
        )
        cls.url = f"/api/v1/servers/{cls.pacs.pk}/approved-users/"

    def post(self, emails: list[str]):
        return self.client.post(
            self.url,
            json.dumps({"emails": emails}),
            content_type="application/json",
            **key_header(self.raw),
        )

    def emails(self) -> list[str]:
        # Long (but valid) addresses, so that the body passes 2.5 MB.
        domain = ".".join(
            [
                f"{'radiology-' * 5}dept",
                f"{'university-hospital-' * 3}x",
                f"{'imaging-' * 6}center",
                "example.org",
            ]
        )
        return [f"{'clinician.' * 5}user{n:05d}@{domain}" for n in range(COUNT)]

    def test_twelve_thousand_emails_are_added_in_one_request_with_history(self) -> None:
        emails = self.emails()
        self.assertGreater(len(json.dumps({"emails": emails})), 2_621_440)
        response = self.post(emails)
        self.assertEqual(response.status_code, 200)
        self.assertEqual(len(response.json()["added"]), COUNT)
        self.assertEqual(self.pacs.approved_users.count(), COUNT)
        self.assertEqual(
            ApprovedUser.history.filter(history_actor="api-key:onboarding-bot").count(),
            COUNT,
        )

    def test_one_bad_email_among_them_writes_nothing_and_is_named(self) -> None:
        emails = self.emails()
        emails[9_999] = "not-an-email"
        response = self.post(emails)
        self.assertEqual(response.status_code, 400)
        self.assertEqual(len(response.json()["emails"]), 1)
        self.assertIn("Item 10000", response.json()["emails"][0])
        self.assertIn("not-an-email", response.json()["emails"][0])
        self.assertFalse(ApprovedUser.objects.exists())
