"""API keys: hashed at rest, shown once, revocable, from the admin and a command."""

from __future__ import annotations

import io
import re

from django.contrib.auth.models import User
from django.core.management import CommandError, call_command
from django.db import connection
from django.test import TestCase, override_settings

from integrations.models import ApiKey
from tests.api_helpers import (
    key_header,
)
from tests.factories import (
    api_key,
)

ACCESS_URL = "/api/v1/access?email=jane@university.example"


@override_settings(ACCESS_THROTTLE_RATE=None)
class CreateApiKeyCommandTests(TestCase):
    def create(self, *args: str) -> list[str]:
        out = io.StringIO()
        call_command("create_api_key", *args, stdout=out)
        return out.getvalue().splitlines()

    def test_it_prints_the_key_alone_on_the_last_line(self) -> None:
        lines = self.create("uploader-production", "--scope", "access")
        raw = lines[-1]
        self.assertRegex(raw, r"^[0-9a-f]{12}\.[A-Za-z0-9_-]{43}$")
        key = ApiKey.objects.get(name="uploader-production")
        self.assertEqual(key.scope, "access")
        self.assertEqual(key.prefix, raw.split(".")[0])
        response = self.client.get(ACCESS_URL, **key_header(raw))
        self.assertEqual(response.status_code, 200)

    def test_it_creates_manage_keys_with_an_expiry(self) -> None:
        self.create("deploy-bot", "--scope", "manage", "--expires-in-days", "30")
        key = ApiKey.objects.get(name="deploy-bot")
        self.assertEqual(key.scope, "manage")
        self.assertIsNotNone(key.expires_at)

    def test_a_scope_is_required_and_checked(self) -> None:
        with self.assertRaises(CommandError):
            self.create("x")
        with self.assertRaises(CommandError):
            self.create("x", "--scope", "admin")
        self.assertFalse(ApiKey.objects.exists())

    def test_a_duplicate_name_is_refused_naming_it(self) -> None:
        self.create("bot", "--scope", "access")
        with self.assertRaisesMessage(CommandError, "Name already exists"):
            self.create("bot", "--scope", "manage")
        self.assertEqual(ApiKey.objects.count(), 1)


class KeyStorageTests(TestCase):
    def test_the_raw_key_appears_nowhere_in_the_database(self) -> None:
        key, raw = api_key("uploader", "manage")
        secret = raw.split(".", 1)[1]
        table = ApiKey._meta.db_table
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT * FROM {table}")
            rows = cursor.fetchall()
        self.assertEqual(len(rows), 1)
        for value in rows[0]:
            self.assertNotIn(secret, str(value))
            self.assertNotIn(raw, str(value))
        self.assertEqual(key.hashed_key, ApiKey.hash(raw))

    def test_two_keys_never_share_a_value(self) -> None:
        _a, raw_a = api_key("a")
        _b, raw_b = api_key("b")
        self.assertNotEqual(raw_a, raw_b)


@override_settings(ACCESS_THROTTLE_RATE=None)
class ApiKeyAdminTests(TestCase):
    @classmethod
    def setUpTestData(cls) -> None:
        cls.admin = User.objects.create_superuser("admin", "admin@example.com", "pw")

    def setUp(self) -> None:
        self.client.force_login(self.admin)

    def test_creating_a_key_shows_the_raw_key_once(self) -> None:
        response = self.client.post(
            "/admin/integrations/apikey/add/",
            {
                "name": "uploader",
                "scope": "access",
                "expires_at_0": "",
                "expires_at_1": "",
            },
        )
        self.assertEqual(response.status_code, 200)
        self.assertIn("no-store", response["Cache-Control"])
        match = re.search(r'id="raw-api-key"[^>]*>([^<]+)<', response.content.decode())
        raw = match.group(1)
        key = ApiKey.objects.get(name="uploader")
        self.assertEqual(key.hashed_key, ApiKey.hash(raw))
        # Not on the change page, and the key works.
        change = self.client.get(f"/admin/integrations/apikey/{key.pk}/change/")
        self.assertNotContains(change, raw.split(".", 1)[1])
        self.assertEqual(
            self.client.get(ACCESS_URL, **key_header(raw)).status_code, 200
        )

    def test_the_revoke_action_revokes_and_the_key_stops_working(self) -> None:
        key, raw = api_key("uploader")
        response = self.client.post(
            "/admin/integrations/apikey/",
            {"action": "revoke", "_selected_action": [key.pk]},
            follow=True,
        )
        self.assertContains(response, "Revoked 1 key(s).")
        key.refresh_from_db()
        self.assertIsNotNone(key.revoked_at)
        self.client.logout()
        self.assertEqual(
            self.client.get(ACCESS_URL, **key_header(raw)).status_code, 401
        )

    def test_the_list_shows_the_state_of_each_key(self) -> None:
        api_key("live")
        revoked, _ = api_key("dead")
        revoked.revoke()
        response = self.client.get("/admin/integrations/apikey/")
        self.assertContains(response, "usable")
        self.assertContains(response, "revoked")
