"""Email and onboarding settings are read strictly from the environment."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from django.conf import settings
from django.core.checks import run_checks
from django.test import SimpleTestCase, override_settings

BASE = {
    "PATH": os.environ.get("PATH", ""),
    "DJANGO_SETTINGS_MODULE": "pacsbin_integrations.settings",
    "DJANGO_SECRET_KEY": "settings-test-secret-key-0123456789abcdef",
    "REGISTRY_PUBLIC_ORIGIN": "https://registry.example",
}
PRINT = (
    "from django.conf import settings as s;"
    "print(s.EMAIL_BACKEND, s.EMAIL_HOST, s.EMAIL_PORT, s.EMAIL_USE_TLS, "
    "s.EMAIL_USE_SSL, s.EMAIL_HOST_PASSWORD, s.ONBOARDING_SUBMISSIONS_PER_HOUR)"
)


def settings_with(**env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", PRINT],
        env={**BASE, **env},
        cwd=Path(settings.BASE_DIR),
        capture_output=True,
        text=True,
        timeout=60,
    )


class EmailSettings(SimpleTestCase):
    def test_the_console_is_the_default(self) -> None:
        out = settings_with().stdout.split()
        self.assertEqual(out[0], "django.core.mail.backends.console.EmailBackend")
        self.assertEqual(out[-1], "10")

    def test_an_smtp_host_switches_to_smtp_with_starttls(self) -> None:
        done = settings_with(
            DJANGO_EMAIL_HOST="smtp.example.org",
            DJANGO_EMAIL_PORT="2525",
            DJANGO_EMAIL_PASSWORD="s3cret",
        )
        self.assertEqual(
            done.stdout.split()[:6],
            [
                "django.core.mail.backends.smtp.EmailBackend",
                "smtp.example.org",
                "2525",
                "True",
                "False",
                "s3cret",
            ],
        )

    def test_ssl_and_tls_together_stop_start_up_with_a_message(self) -> None:
        done = settings_with(DJANGO_EMAIL_USE_SSL="1", DJANGO_EMAIL_USE_TLS="1")
        self.assertNotEqual(done.returncode, 0)
        self.assertIn("DJANGO_EMAIL_USE_SSL and DJANGO_EMAIL_USE_TLS", done.stderr)

    def test_a_malformed_port_or_limit_is_named(self) -> None:
        done = settings_with(DJANGO_EMAIL_PORT="smtp")
        self.assertIn("DJANGO_EMAIL_PORT='smtp' is not a whole number", done.stderr)
        done = settings_with(ONBOARDING_SUBMISSIONS_PER_HOUR="0")
        self.assertIn(
            "ONBOARDING_SUBMISSIONS_PER_HOUR='0' must be at least 1", done.stderr
        )

    def test_the_confirmation_window_is_read_strictly(self) -> None:
        done = settings_with(ONBOARDING_CONFIRM_HOURS="0")
        self.assertIn("ONBOARDING_CONFIRM_HOURS='0' must be at least 1", done.stderr)
        done = settings_with(ONBOARDING_CONFIRM_HOURS="two days")
        self.assertIn(
            "ONBOARDING_CONFIRM_HOURS='two days' is not a whole number", done.stderr
        )

    def test_the_confirmation_window_defaults_to_48_hours(self) -> None:
        done = subprocess.run(
            [
                sys.executable,
                "-c",
                "from django.conf import settings as s; "
                "print(s.ONBOARDING_CONFIRM_HOURS)",
            ],
            env={**BASE, "ONBOARDING_CONFIRM_HOURS": ""},
            cwd=Path(settings.BASE_DIR),
            capture_output=True,
            text=True,
            timeout=60,
        )
        self.assertEqual(done.stdout.strip(), "48", done.stderr)


class NotifyEmailsCheck(SimpleTestCase):
    @override_settings(ONBOARDING_NOTIFY_EMAILS=["ok@pacsbin.example", "broken@"])
    def test_a_bad_address_is_reported_by_the_system_check(self) -> None:
        errors = [e for e in run_checks() if e.id == "integrations.E010"]
        self.assertEqual(len(errors), 1)
        self.assertIn("“broken@”", errors[0].msg)
