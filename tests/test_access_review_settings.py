"""The access reviews' settings are read strictly: a bad value stops
start-up naming the variable."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PRINT = """
import django
django.setup()
from django.conf import settings as s
print(s.ACCESS_REVIEW_DAYS, s.ACCESS_REVIEW_GRACE_DAYS, s.ACCESS_REVIEW_ENFORCE,
      s.CELERY_BEAT_SCHEDULE["access-reviews"]["task"])
"""


def start(**env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("ACCESS_REVIEW")}
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


def test_the_defaults_are_every_180_days_with_30_of_grace_unenforced() -> None:
    result = start()
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["180", "30", "False", "access_reviews.run"]


def test_zero_days_is_off_and_enforce_is_taken() -> None:
    result = start(ACCESS_REVIEW_DAYS="0", ACCESS_REVIEW_ENFORCE="1")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[:3] == ["0", "30", "True"]


@pytest.mark.parametrize(
    ("env", "name", "message"),
    [
        ({"ACCESS_REVIEW_DAYS": "-1"}, "ACCESS_REVIEW_DAYS", "must be at least 0"),
        ({"ACCESS_REVIEW_DAYS": "half"}, "ACCESS_REVIEW_DAYS", "half"),
        ({"ACCESS_REVIEW_GRACE_DAYS": "0"}, "ACCESS_REVIEW_GRACE_DAYS", "at least 1"),
        (
            {"ACCESS_REVIEW_DAYS": "20", "ACCESS_REVIEW_GRACE_DAYS": "30"},
            "ACCESS_REVIEW_GRACE_DAYS=30",
            "must be shorter than ACCESS_REVIEW_DAYS=20",
        ),
        ({"ACCESS_REVIEW_ENFORCE": "maybe"}, "ACCESS_REVIEW_ENFORCE", "maybe"),
    ],
)
def test_a_bad_value_stops_start_up_naming_it(
    env: dict[str, str], name: str, message: str
) -> None:
    result = start(**env)
    assert result.returncode != 0
    assert name in result.stderr
    assert message in result.stderr
