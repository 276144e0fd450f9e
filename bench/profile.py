"""Where the time of one answer goes: pyinstrument over many in-process calls
of the access question, the floor, the bare endpoint and the health check, on a
seeded SQLite registry.

    python -m bench.profile [--users 100000] [--calls 3000]
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from pathlib import Path

from bench.env import base_env

HEALTH = "/api/v1/health"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--path", default="", help="profile only this path")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="bench-profile-"))
    # The benchmark's own environment, in process, on a SQLite file of its own.
    env = base_env()
    os.environ.clear()
    os.environ.update(
        env,
        DJANGO_STATIC_MANIFEST="0",
        SQLITE_PATH=str(workdir / "profile.sqlite3"),
    )
    import django

    django.setup()
    from django.core.management import call_command
    from django.test import Client
    from pyinstrument import Profiler

    from bench.env import ACCESS_PATH, BARE_PATH, FLOOR_PATH
    from bench.measure import load_queries
    from bench.seed import Sizes, seed
    from integrations.models import ApiKey

    call_command("migrate", verbosity=0)
    users = seed(Sizes(2000, 10_000, args.users))
    _key, raw = ApiKey.objects.create_key("profile", ApiKey.Scope.ACCESS)
    queries = load_queries(users, args.calls, random.Random(7))
    client = Client(HTTP_AUTHORIZATION=f"Api-Key {raw}")
    for path in (
        [args.path] if args.path else [ACCESS_PATH, FLOOR_PATH, BARE_PATH, HEALTH]
    ):
        for query in queries:  # warm up, and time it without the profiler
            client.get(f"{path}?{query}")
        started = time.perf_counter()
        for query in queries:
            client.get(f"{path}?{query}")
        plain = (time.perf_counter() - started) / len(queries) * 1e6
        print(f"{path}: {plain:.0f} µs per call (not profiled)")
        profiler = Profiler(interval=0.0002)
        started = time.perf_counter()
        with profiler:
            for query in queries:
                client.get(f"{path}?{query}")
        per_call = (time.perf_counter() - started) / len(queries) * 1e6
        print(f"\n===== {path}: {per_call:.0f} µs per call (profiled) =====")
        print(profiler.output_text(unicode=True, color=False, show_all=False))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
