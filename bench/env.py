"""The environment every benchmark process runs with."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def base_env() -> dict[str, str]:
    """Production settings over plain HTTP on loopback, with a fresh secret."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("DJANGO_", "DATABASE_", "SQLITE_", "BENCH_", "CACHE_"))
    }
    env.update(
        DJANGO_SETTINGS_MODULE="pacsbin_integrations.settings",
        DJANGO_DEBUG="0",
        DJANGO_SECRET_KEY=secrets.token_urlsafe(50),
        DJANGO_INSECURE_HTTP="1",
        DJANGO_ALLOWED_HOSTS="127.0.0.1,testserver",
        # The throttle runs on both sides, but never refuses the benchmark.
        ACCESS_THROTTLE_RATE="1000000000/min",
        LOG_LEVEL="WARNING",
        PYTHONPATH=str(ROOT),
    )
    return env
