"""The front page sends each kind of visitor where they need to go."""

from __future__ import annotations

from django.test import TestCase


class HomePageTests(TestCase):
    def test_it_links_hospital_it_staff_and_developers_onward(self) -> None:
        response = self.client.get("/")
        assert response.status_code == 200
        for link in ('href="/onboarding/"', 'href="/admin/"', 'href="/api/docs/"'):
            self.assertContains(response, link)

    def test_it_needs_no_login_and_loads_nothing_from_elsewhere(self) -> None:
        html = self.client.get("/").content.decode()
        self.assertNotRegex(html, r"(src|href)=\"https?://")

    def test_it_carries_the_public_pages_content_security_policy(self) -> None:
        response = self.client.get("/")
        assert "script-src 'self'" in response["Content-Security-Policy"]
