"""Monitoring's settings are read strictly: a bad value stops start-up
naming the variable."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pacsbin_integrations.env import Env

ROOT = Path(__file__).resolve().parent.parent
PRINT = """
import django
django.setup()
from django.conf import settings as s
print(s.MONITOR_INTERVAL_MINUTES, s.MONITOR_TICK_SECONDS, s.CELERY_TASK_ALWAYS_EAGER,
      s.MONITOR_ALERT_EMAILS, s.MONITOR_FAILING_AFTER, bool(s.METRICS_TOKEN))
"""


def start(**env: str) -> subprocess.CompletedProcess[str]:
    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("MONITOR_", "CELERY_", "METRICS_"))
    }
    clean.update(
        DJANGO_SECRET_KEY="settings-test-secret-key-0123456789abcdef",
        DJANGO_SETTINGS_MODULE="pacsbin_integrations.settings",
        **env,
    )
    return subprocess.run(
        [sys.executable, "-c", PRINT],
        env=clean,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_defaults_are_the_embedded_engine_every_15_minutes() -> None:
    result = start()
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["15.0", "60.0", "True", "[]", "2", "False"]


def test_a_redis_broker_and_fractional_minutes_are_taken() -> None:
    result = start(
        CELERY_BROKER_URL="redis://127.0.0.1:6379/3",
        MONITOR_INTERVAL_MINUTES="0.05",
        MONITOR_ALERT_EMAILS="Ops@Example.org, oncall@example.org",
        METRICS_TOKEN="t",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[:3] == ["0.05", "1.0", "False"]
    assert "'Ops@example.org', 'oncall@example.org'" in result.stdout


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("MONITOR_INTERVAL_MINUTES", "0", "must be at least 0.01"),
        ("MONITOR_INTERVAL_MINUTES", "1e3", "is not a number"),
        ("MONITOR_INTERVAL_MINUTES", "nan", "is not a number"),
        ("MONITOR_FAILING_AFTER", "0", "must be at least 1"),
        ("MONITOR_KEEP_DAYS", "3", "must be at least 7"),
        ("MONITOR_ALERT_EMAILS", "ops@example.org, not-an-email", "not-an-email"),
        ("CELERY_BROKER_URL", "amqp://guest@localhost//", "is not supported"),
        ("MONITOR_TASK_TIME_LIMIT", "10", "must be at least 60"),
        ("MONITOR_FLAP_CHANGES", "1", "must be at least 2"),
        ("MONITOR_FLAP_WINDOW_HOURS", "two", "is not a number"),
        ("MONITOR_FLAP_QUIET_INTERVALS", "0", "must be at least 1"),
        ("MONITOR_TLS_WINDOW_HOURS", "-1", "is not a number"),
    ],
)
def test_a_bad_value_stops_start_up_naming_it(
    name: str, value: str, message: str
) -> None:
    result = start(**{name: value})
    assert result.returncode != 0
    assert name in result.stderr
    assert message in result.stderr


def test_the_number_reader_is_strict() -> None:
    env = Env({"A": "2.5", "B": " 3 ", "C": "-1", "D": "1.2.3", "E": "٣"})
    assert env.number("A", 1) == 2.5
    assert env.number("B", 1) == 3.0
    assert env.number("missing", 7.5) == 7.5
    for name in ("C", "D", "E"):
        with pytest.raises(Exception, match=name):
            env.number(name, 1)
