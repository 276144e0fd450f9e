"""The environment every benchmark process runs with."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# What the load asks: the access question, and the benchmark's own endpoints
# (bench.urls) it is compared with.
ACCESS_PATH = "/api/v1/access"
FLOOR_PATH = "/api/v1/_floor"
BARE_PATH = "/api/v1/_bare"


def base_env() -> dict[str, str]:
    """Production settings over plain HTTP on loopback, with a fresh secret;
    ``bench.settings``: the product's, with the floor and the bare endpoint."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(
            (
                "DJANGO_",
                "DATABASE_",
                "SQLITE_",
                "BENCH_",
                "CACHE_",
                "REGISTRY_",
            )
        )
    }
    env.update(
        DJANGO_SETTINGS_MODULE="bench.settings",
        DJANGO_DEBUG="0",
        DJANGO_SECRET_KEY=secrets.token_urlsafe(50),
        DJANGO_INSECURE_HTTP="1",
        DJANGO_ALLOWED_HOSTS="127.0.0.1,testserver",
        REGISTRY_PUBLIC_ORIGIN="http://127.0.0.1",
        # The throttle runs on both sides, but never refuses the benchmark.
        ACCESS_THROTTLE_RATE="1000000000/min",
        LOG_LEVEL="WARNING",
        PYTHONPATH=str(ROOT),
    )
    return env
