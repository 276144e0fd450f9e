"""The API key form as a staffer meets it: the least scope picked for them,
and the help text readable (admin help texts are HTML)."""

from __future__ import annotations

import re

from django.contrib.auth import get_user_model
from django.test import TestCase

from integrations.models import ApiKey


class ApiKeyAddFormTests(TestCase):
    @classmethod
    def setUpTestData(cls) -> None:
        cls.boss = get_user_model().objects.create_superuser("boss", "b@x.org", "pw")

    def setUp(self) -> None:
        self.client.force_login(self.boss)

    def test_scope_starts_at_access(self) -> None:
        html = self.client.get("/admin/integrations/apikey/add/").content.decode()
        selected = re.search(r'<option value="(\w+)"[^>]*selected', html)
        assert selected and selected.group(1) == "access"

    def test_the_name_help_shows_the_audit_label(self) -> None:
        html = self.client.get("/admin/integrations/apikey/add/").content.decode()
        assert "“api-key:” followed by this name" in html
        assert "api-key:<name>" not in html

    def test_saving_without_touching_the_scope_makes_an_access_key(self) -> None:
        response = self.client.post(
            "/admin/integrations/apikey/add/",
            {"name": "uploader-dev", "scope": "access"},
        )
        assert response.status_code in (200, 302)
        assert ApiKey.objects.get(name="uploader-dev").scope == "access"
        assert ApiKey._meta.get_field("scope").default == "access"
