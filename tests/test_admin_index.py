"""The admin index leads with what needs a staffer today."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.test import TestCase

from tests.factories import submitted_request


class AdminIndexTests(TestCase):
    @classmethod
    def setUpTestData(cls) -> None:
        User = get_user_model()
        cls.boss = User.objects.create_superuser("boss", "boss@pacsbin.example", "pw")
        cls.clerk = User.objects.create_user("clerk", password="pw", is_staff=True)
        submitted_request(institution_name="Waiting One")
        submitted_request(institution_name="Waiting Two")
        submitted_request(institution_name="Not Confirmed", confirmed=False)

    def test_it_counts_confirmed_requests_waiting_for_review(self) -> None:
        self.client.force_login(self.boss)
        response = self.client.get("/admin/")
        self.assertContains(response, "<strong>2</strong> onboarding requests waiting")
        self.assertContains(response, 'href="/admin/integrations/onboardingrequest/"')

    def test_it_offers_the_access_lookup(self) -> None:
        self.client.force_login(self.boss)
        response = self.client.get("/admin/")
        self.assertContains(response, "What does this email see?")
        self.assertContains(
            response, 'action="/admin/integrations/approveduser/lookup/"'
        )

    def test_staff_without_the_permissions_see_neither(self) -> None:
        self.client.force_login(self.clerk)
        response = self.client.get("/admin/")
        assert response.status_code == 200
        self.assertNotContains(response, "waiting for review")
        self.assertNotContains(response, "What does this email see?")

    def test_each_part_follows_its_own_permission(self) -> None:
        self.clerk.user_permissions.add(
            Permission.objects.get(codename="view_approveduser")
        )
        self.client.force_login(self.clerk)
        response = self.client.get("/admin/")
        self.assertContains(response, "What does this email see?")
        self.assertNotContains(response, "waiting for review")
