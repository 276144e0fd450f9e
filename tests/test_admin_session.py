"""Staff sessions end after ADMIN_SESSION_IDLE_MINUTES without a request and
ADMIN_SESSION_MAX_HOURS after signing in, whatever the activity; the last
activity is written at most once a minute. Tested with a controlled clock."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from unittest import mock

import pytest
from django.contrib.auth import get_user_model
from django.contrib.sessions.models import Session
from django.test import TestCase, override_settings

from integrations import adminsession
from tests.api_helpers import key_header
from tests.factories import api_key

ROOT = Path(__file__).resolve().parent.parent
T0 = 1_900_000_000.0
MINUTE = 60.0
HOUR = 3600.0


@override_settings(ADMIN_SESSION_IDLE_MINUTES=30, ADMIN_SESSION_MAX_HOURS=12)
class AdminSessionTimeoutTests(TestCase):
    @classmethod
    def setUpTestData(cls) -> None:
        cls.staff = get_user_model().objects.create_superuser(
            "alice", "alice@example.org", "pw"
        )

    def setUp(self) -> None:
        self.client.force_login(self.staff)

    def admin_at(self, at: float) -> int:
        with mock.patch.object(adminsession, "now", return_value=at):
            return self.client.get("/admin/").status_code

    def stored(self) -> dict:
        key = self.client.cookies["sessionid"].value
        return Session.objects.get(session_key=key).get_decoded()

    def test_an_idle_session_is_sent_to_the_login_page(self) -> None:
        assert self.admin_at(T0) == 200
        with mock.patch.object(adminsession, "now", return_value=T0 + 31 * MINUTE):
            response = self.client.get("/admin/integrations/institution/")
        assert response.status_code == 302
        assert response["Location"].startswith("/admin/login/?next=")
        # Ended, not merely refused once: the session no longer signs in.
        assert self.admin_at(T0 + 32 * MINUTE) == 302
        self.assertNotIn("_auth_user_id", self.client.session)

    def test_the_login_page_says_why(self) -> None:
        self.admin_at(T0)
        with mock.patch.object(adminsession, "now", return_value=T0 + HOUR):
            response = self.client.get("/admin/", follow=True)
        self.assertContains(response, "30 minutes without activity")

    def test_activity_keeps_the_session_alive(self) -> None:
        for step in range(7):  # two hours, a request every 20 minutes
            assert self.admin_at(T0 + step * 20 * MINUTE) == 200, step

    def test_the_maximum_age_ends_it_anyway(self) -> None:
        at = T0
        while at <= T0 + 12 * HOUR:
            assert self.admin_at(at) == 200, (at - T0) / HOUR
            at += 25 * MINUTE
        assert self.admin_at(T0 + 12 * HOUR + MINUTE) == 302

    def test_activity_is_written_at_most_once_a_minute(self) -> None:
        self.admin_at(T0)
        assert self.stored()[adminsession.SEEN_AT] == int(T0)
        self.admin_at(T0 + 50)
        assert self.stored()[adminsession.SEEN_AT] == int(T0)
        self.admin_at(T0 + 61)
        assert self.stored()[adminsession.SEEN_AT] == int(T0 + 61)
        assert self.stored()[adminsession.SIGNED_IN_AT] == int(T0)

    def test_a_password_login_starts_the_clock(self) -> None:
        self.client.logout()
        with mock.patch.object(adminsession, "now", return_value=T0):
            response = self.client.post(
                "/admin/login/?next=/admin/",
                {"username": "alice", "password": "pw"},
            )
        assert response.status_code == 302
        assert self.stored()[adminsession.SIGNED_IN_AT] == int(T0)
        assert self.admin_at(T0 + 29 * MINUTE) == 200
        assert self.admin_at(T0 + 60 * MINUTE) == 302


@override_settings(ACCESS_THROTTLE_RATE=None)
class ApiKeyCallsTests(TestCase):
    def test_a_call_with_a_key_writes_no_session(self) -> None:
        _key, raw = api_key("bot", "manage")
        response = self.client.get("/api/v1/institutions/", **key_header(raw))
        assert response.status_code == 200
        assert "sessionid" not in response.cookies
        assert not Session.objects.exists()


def settings_of(**env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("ADMIN_SESSION")}
    clean.update(
        DJANGO_SECRET_KEY="settings-test-secret-key-0123456789abcdef",
        DJANGO_SETTINGS_MODULE="pacsbin_integrations.settings",
        **env,
    )
    code = (
        "import django; django.setup(); from django.conf import settings as s; "
        "print(s.ADMIN_SESSION_IDLE_MINUTES, s.ADMIN_SESSION_MAX_HOURS, "
        "s.SESSION_COOKIE_AGE)"
    )
    return subprocess.run(
        [sys.executable, "-c", code],
        env=clean,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_defaults_are_30_minutes_idle_and_12_hours() -> None:
    result = settings_of()
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["30", "12", "43200"]
    result = settings_of(ADMIN_SESSION_IDLE_MINUTES="15", ADMIN_SESSION_MAX_HOURS="8")
    assert result.stdout.split() == ["15", "8", "28800"]


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"ADMIN_SESSION_IDLE_MINUTES": "0"}, "ADMIN_SESSION_IDLE_MINUTES='0'"),
        ({"ADMIN_SESSION_MAX_HOURS": "12h"}, "ADMIN_SESSION_MAX_HOURS='12h'"),
        (
            {"ADMIN_SESSION_IDLE_MINUTES": "600", "ADMIN_SESSION_MAX_HOURS": "8"},
            "ADMIN_SESSION_IDLE_MINUTES=600 is longer than ADMIN_SESSION_MAX_HOURS=8",
        ),
    ],
)
def test_a_bad_value_stops_start_up_naming_it(env: dict, message: str) -> None:
    result = settings_of(**env)
    assert result.returncode != 0
    assert message in result.stderr
