"""Start-up reads the environment strictly and refuses unsafe configurations."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.checks import run_checks
from django.test import override_settings

ROOT = Path(__file__).resolve().parent.parent


PRINT_SETTINGS = """
import django
django.setup()
from django.conf import settings as s
print(s.DEBUG, s.SECURE_SSL_REDIRECT, s.SECURE_HSTS_SECONDS, s.SESSION_COOKIE_SECURE)
"""


def start(**env: str) -> subprocess.CompletedProcess[str]:
    """Start Django in a fresh process with exactly these settings variables."""
    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(
            ("DJANGO_", "UPLOADER_", "DATABASE_URL", "CACHE_URL", "REGISTRY_")
        )
    }
    clean["REGISTRY_PUBLIC_ORIGIN"] = "https://registry.example"
    clean.update(env)
    return subprocess.run(
        [
            sys.executable,
            "-c",
            PRINT_SETTINGS,
        ],
        env={**clean, "DJANGO_SETTINGS_MODULE": "pacsbin_integrations.settings"},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_start_up_refuses_a_missing_secret_key_with_debug_off() -> None:
    result = start()
    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY is required" in result.stderr


def test_debug_on_runs_without_a_secret_key() -> None:
    result = start(DJANGO_DEBUG="1")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[0] == "True"


def test_start_up_refuses_a_missing_public_origin_with_debug_off() -> None:
    """Links in emails are built on it; a request's Host must never stand in."""
    result = start(DJANGO_SECRET_KEY="k" * 50, REGISTRY_PUBLIC_ORIGIN="")
    assert result.returncode != 0
    assert "REGISTRY_PUBLIC_ORIGIN is required when DJANGO_DEBUG is off" in (
        result.stderr
    )


def test_the_public_origin_must_be_https_unless_insecure_http() -> None:
    plain = "http://registry.example"
    result = start(DJANGO_SECRET_KEY="k" * 50, REGISTRY_PUBLIC_ORIGIN=plain)
    assert result.returncode != 0
    assert "REGISTRY_PUBLIC_ORIGIN=http://registry.example must be an https://" in (
        result.stderr
    )
    result = start(
        DJANGO_SECRET_KEY="k" * 50,
        REGISTRY_PUBLIC_ORIGIN=plain,
        DJANGO_INSECURE_HTTP="1",
    )
    assert result.returncode == 0, result.stderr


def test_the_demo_runs_without_a_public_origin() -> None:
    result = start(DJANGO_DEBUG="1", REGISTRY_PUBLIC_ORIGIN="")
    assert result.returncode == 0, result.stderr


def test_with_debug_off_https_redirect_secure_cookies_and_hsts_are_on() -> None:
    result = start(DJANGO_SECRET_KEY="k" * 50)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "True", "31536000", "True"]


def test_insecure_http_turns_them_off() -> None:
    result = start(DJANGO_SECRET_KEY="k" * 50, DJANGO_INSECURE_HTTP="1")
    assert result.stdout.split() == ["False", "False", "0", "False"]


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"DJANGO_DEBUG": "maybe"}, "DJANGO_DEBUG='maybe'"),
        (
            {"DJANGO_DEBUG": "1", "DJANGO_INSECURE_HTTP": "yes please"},
            "DJANGO_INSECURE_HTTP",
        ),
        (
            {"DJANGO_DEBUG": "1", "UPLOADER_ORIGINS": "pacsbin.com"},
            "UPLOADER_ORIGINS: “pacsbin.com” is not an origin",
        ),
        (
            {"DJANGO_DEBUG": "1", "UPLOADER_ORIGINS": "https://pacsbin.com/app"},
            "UPLOADER_ORIGINS",
        ),
        ({"DJANGO_DEBUG": "1", "CACHE_URL": "memcached://x"}, "CACHE_URL"),
        ({"DJANGO_DEBUG": "1", "DATABASE_URL": "nosuch://x"}, "DATABASE_URL"),
        (
            {"DJANGO_DEBUG": "1", "DJANGO_TRUSTED_PROXIES": "two"},
            "DJANGO_TRUSTED_PROXIES",
        ),
        (
            {"DJANGO_DEBUG": "1", "UPLOADER_JWT_MAX_LIFETIME": "1 day"},
            "UPLOADER_JWT_MAX_LIFETIME='1 day' is not a whole number",
        ),
        (
            {"DJANGO_DEBUG": "1", "UPLOADER_JWT_MAX_LIFETIME": "0"},
            "UPLOADER_JWT_MAX_LIFETIME='0' must be at least 1",
        ),
        (
            {"DJANGO_DEBUG": "1", "AXES_USERNAME_FAILURE_LIMIT": "lots"},
            "AXES_USERNAME_FAILURE_LIMIT",
        ),
        (
            {"DJANGO_DEBUG": "1", "REGISTRY_PUBLIC_ORIGIN": "https://r.example/x"},
            "REGISTRY_PUBLIC_ORIGIN: “https://r.example/x” is not an origin",
        ),
        (
            {
                "DJANGO_DEBUG": "1",
                "CACHE_URL": "redis://127.0.0.1:6379/9",
                "CACHE_SOCKET_TIMEOUT": "forever",
            },
            "CACHE_SOCKET_TIMEOUT='forever' is not a number",
        ),
        (
            {
                "DJANGO_DEBUG": "1",
                "CACHE_URL": "redis://127.0.0.1:6379/9",
                "CACHE_RETRY_SECONDS": "0",
            },
            "CACHE_RETRY_SECONDS='0' must be at least 0.1",
        ),
        (
            {"DJANGO_DEBUG": "1", "MONITOR_REDELIVER_SECONDS": "1h"},
            "MONITOR_REDELIVER_SECONDS",
        ),
    ],
)
def test_a_malformed_value_stops_start_up_naming_the_variable(
    env: dict[str, str], named: str
) -> None:
    result = start(**env)
    assert result.returncode != 0
    assert named in result.stderr


def test_the_secret_key_may_come_from_a_file(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("s" * 50 + "\n")
    result = start(DJANGO_SECRET_KEY_FILE=str(secret))
    assert result.returncode == 0, result.stderr


def check_ids() -> list[str]:
    return sorted(
        message.id for message in run_checks() if message.id.startswith("integrations.")
    )


PRINT_DATABASE = """
import django
django.setup()
from django.conf import settings as s
d = s.DATABASES["default"]
print(d["NAME"], d["CONN_MAX_AGE"], d["OPTIONS"]["timeout"],
      d["OPTIONS"]["transaction_mode"], d["OPTIONS"]["init_command"])
"""


def test_sqlite_is_hardened_however_it_is_named(tmp_path: Path) -> None:
    path = tmp_path / "registry.sqlite3"
    answers = []
    for env in ({"SQLITE_PATH": str(path)}, {"DATABASE_URL": f"sqlite:///{path}"}):
        clean = {k: v for k, v in os.environ.items() if not k.startswith("DATABASE")}
        done = subprocess.run(
            [sys.executable, "-c", PRINT_DATABASE],
            env={
                **clean,
                **env,
                "DJANGO_DEBUG": "1",
                "DJANGO_SETTINGS_MODULE": "pacsbin_integrations.settings",
            },
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        answers.append(done.stdout)
    assert answers[0] == answers[1]
    assert answers[0].startswith(f"{path} 60 20 IMMEDIATE PRAGMA journal_mode=WAL;")


def test_no_integration_check_fires_on_a_good_configuration() -> None:
    assert check_ids() == []


@override_settings(UPLOADER_ORIGINS=[], DEBUG=False)
def test_empty_uploader_origins_is_an_error() -> None:
    assert check_ids() == ["integrations.E001"]


@override_settings(UPLOADER_ORIGINS=["http://pacsbin.com"], UPLOADER_JWT_SECRET="short")
def test_a_plain_http_origin_and_a_short_jwt_secret_are_reported() -> None:
    assert check_ids() == ["integrations.E002", "integrations.W001"]
