"""One database, one size: seed, serve with gunicorn, measure, print JSON.

Started by ``python -m bench`` with the environment of the deployment under test
(DATABASE_URL or SQLITE_PATH, a generated secret, debug off); it measures

- SQL queries per answer and the mean answer size, in process through the
  whole Django stack (test client), over a sample of the load's queries;
- the access question (a), its floor (b) and the bare endpoint (c: Django and
  one query) under load, served by one gunicorn with 2 workers and
  ``bench.settings`` (the product's settings with the bench's URLconf), in
  rounds of one phase each whose order changes (a b c, a c b, b a c, ...) so
  that drift hurts no side;
- then the outside measurement (bench/outside.py): wrk against the access
  question and /api/v1/health through gunicorn with 2 sync workers, as the
  README's production line serves.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import django

from bench import outside
from bench.env import ACCESS_PATH, BARE_PATH, FLOOR_PATH

PATHS = {"access": ACCESS_PATH, "floor": FLOOR_PATH, "bare": BARE_PATH}
UNKNOWN_SHARE = 0.1  # of the load's emails, never approved anywhere
QUERY_COUNT_SAMPLE = 300


def log(message: str) -> None:
    print(f"[{os.environ.get('BENCH_LABEL', 'bench')}] {message}", file=sys.stderr)


_tenths_shown: dict[str, int] = {}


def progress(what: str, done: int, total: int) -> None:
    """A bar redrawn in place on a terminal; a line per tenth in a log."""
    width = 30
    filled = width * done // total if total else width
    line = f"  seeding {what:>15} [{'#' * filled}{'-' * (width - filled)}]"
    line += f" {done:>9,}/{total:,}"
    if sys.stderr.isatty():
        sys.stderr.write(line + ("\n" if done >= total else "\r"))
    elif _tenths_shown.get(what) != (tenth := done * 10 // max(total, 1)):
        _tenths_shown[what] = tenth
        sys.stderr.write(line + "\n")
    sys.stderr.flush()


def load_queries(users: int, count: int, rng: random.Random) -> list[str]:
    """Query strings for the load: approved emails (some in another case, as
    people type them) and unknown ones."""
    from bench.seed import user_email

    queries = []
    for n in range(count):
        if rng.random() < UNKNOWN_SHARE:
            email = f"nobody{n}@unknown{n % 50}.example.net"
        else:
            email = user_email(rng.randrange(users))
            if rng.random() < 0.2:
                email = email.upper()
        queries.append(urlencode({"email": email}))
    return queries


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_gunicorn(
    port: int, floor_bytes: int, workdir: Path, sync: bool = False
) -> subprocess.Popen:
    """gunicorn with 2 workers: ``gthread`` x 4 with keep-alive, or (``sync``)
    the default sync workers of the README's production line, which close
    every connection after its answer."""
    env = dict(os.environ, BENCH_FLOOR_BYTES=str(floor_bytes))
    command = [
        sys.executable,
        "-m",
        "gunicorn",
        "pacsbin_integrations.wsgi:application",
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        "2",
        "--log-level",
        "warning",
    ]
    if not sync:
        # gthread: the sync worker closes every connection; the uploader's
        # browsers and the load generator keep theirs alive.
        command += ["--worker-class", "gthread", "--threads", "4", "--keep-alive", "30"]
    log_file = open(workdir / f"gunicorn-{port}.log", "w")  # noqa: SIM115
    server = subprocess.Popen(command, env=env, stdout=log_file, stderr=log_file)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"gunicorn exited; see {log_file.name}")
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{port}/api/v1/health", timeout=1
            ) as response:
                if response.status == 200:
                    return server
        except OSError:
            time.sleep(0.2)
    server.terminate()
    raise SystemExit(f"gunicorn did not answer within 30 s; see {log_file.name}")


def run_rounds(
    port: int, key: str, queries_file: Path, duration: float, rounds: int
) -> list[dict[str, Any]]:
    """The load generator in its own process: a warm-up round, then ``rounds``
    rounds of an access, a floor and a bare phase, in changing order."""
    command = [
        sys.executable,
        "-m",
        "bench.load",
        f"--port={port}",
        f"--paths={','.join(PATHS.values())}",
        f"--key={key}",
        f"--queries={queries_file}",
        f"--duration={duration}",
        f"--rounds={rounds}",
        "--warmup",
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    phases = json.loads(done.stdout)
    errors = [phase["errors"] for phase in phases if phase["errors"]]
    if errors:
        raise SystemExit(f"errors under load: {errors}")
    return phases


def queries_per_answer(key: str, queries: list[str]) -> tuple[float, int, float]:
    """(mean SQL queries, max, mean body bytes) over a sample of the load,
    through the whole stack in process."""
    from django.db import connection, reset_queries
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    client = Client(HTTP_AUTHORIZATION=f"Api-Key {key}")
    # The key's first use writes last_used_at (then at most once a minute):
    # not a cost per answer.
    client.get(f"{ACCESS_PATH}?{queries[0]}")
    counts, sizes = [], []
    for query in queries[:QUERY_COUNT_SAMPLE]:
        with CaptureQueriesContext(connection) as captured:
            response = client.get(f"{ACCESS_PATH}?{query}")
        if response.status_code != 200:
            raise SystemExit(f"{query}: HTTP {response.status_code}")
        counts.append(len(captured.captured_queries))
        sizes.append(len(response.content))
        reset_queries()
    return statistics.mean(counts), max(counts), statistics.mean(sizes)


def bare_queries() -> int:
    """SQL queries of one bare answer, through the whole stack in process: it
    stands for "Django and one query", so it must be exactly one."""
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as captured:
        response = Client().get(BARE_PATH)
    if response.status_code != 200 or len(captured.captured_queries) != 1:
        raise SystemExit(
            f"{BARE_PATH}: HTTP {response.status_code}, "
            f"{len(captured.captured_queries)} queries (expected 200, 1)"
        )
    return len(captured.captured_queries)


def summarise(phases: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians over the rounds. Each round holds one phase per path; ratios and
    p50 gaps are taken within a round, then the median: the phases of a round
    ran back to back, so load from other programs mostly cancels out."""
    by_path = {
        name: [p for p in phases if p["path"] == path] for name, path in PATHS.items()
    }
    rounds = [
        dict(zip(by_path, r, strict=True)) for r in zip(*by_path.values(), strict=True)
    ]
    for r in rounds:
        log(
            " | ".join(
                f"{name} {r[name]['rps']:5.0f} req/s p50 {r[name]['p50_ms']:5.2f} ms "
                f"p99 {r[name]['p99_ms']:6.2f} ms"
                for name in PATHS
            )
        )

    def median(name: str, value: str) -> float:
        return statistics.median(phase[value] for phase in by_path[name])

    def within_rounds(value: Any) -> float:
        return statistics.median(value(r) for r in rounds)

    return {
        "access_rps": median("access", "rps"),
        "floor_rps": median("floor", "rps"),
        "bare_rps": median("bare", "rps"),
        "ratio": within_rounds(lambda r: r["access"]["rps"] / r["floor"]["rps"]),
        "ratio_bare": within_rounds(lambda r: r["access"]["rps"] / r["bare"]["rps"]),
        "p50_over_floor_ms": within_rounds(
            lambda r: r["access"]["p50_ms"] - r["floor"]["p50_ms"]
        ),
        "p50_over_bare_ms": within_rounds(
            lambda r: r["access"]["p50_ms"] - r["bare"]["p50_ms"]
        ),
        "p50_ms": median("access", "p50_ms"),
        "p99_ms": median("access", "p99_ms"),
        "floor_p50_ms": median("floor", "p50_ms"),
        "floor_p99_ms": median("floor", "p99_ms"),
        "bare_p50_ms": median("bare", "p50_ms"),
        "bare_p99_ms": median("bare", "p99_ms"),
        "floor_bytes": median("floor", "mean_bytes"),
        "bare_bytes": median("bare", "mean_bytes"),
        "connections": phases[0]["connections"],
        "rounds": rounds,
    }


def measure_outside(key: str, users: int, args: Any) -> dict[str, Any] | None:
    """wrk against the access question and /api/v1/health, through gunicorn
    with 2 sync workers (bench/outside.py), for random approved emails among
    20,000 of the registry."""
    if not outside.available():
        if os.environ.get("CI"):
            raise SystemExit("wrk is not installed (apt-get install wrk)")
        log("wrk is not installed (apt-get install wrk): no outside measurement")
        return None
    emails = outside.approved_emails(users, outside.EMAILS, random.Random(11))
    emails_file = args.workdir / f"emails-{os.getpid()}.txt"
    emails_file.write_text("\n".join(emails) + "\n", encoding="utf-8")
    port = free_port()
    server = start_gunicorn(port, 400, args.workdir, sync=True)
    backends = None
    database_url = os.environ.get("DATABASE_URL")
    if database_url:  # the backends on the same server, seen from its own
        base, _, database = database_url.rpartition("/")
        backends = outside.postgres_backends(f"{base}/postgres", database)
    try:
        rounds = outside.run_rounds(
            port,
            key,
            emails_file,
            args.outside_duration,
            args.outside_rounds,
            cpu=outside.server_cpu(server.pid, backends),
        )
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
        emails_file.unlink(missing_ok=True)
    result = outside.summarise(rounds)
    for r in rounds:
        log(
            "wrk "
            + " | ".join(
                f"{name} {r[name]['rps']:5.0f} req/s p50 {r[name]['p50_ms']:5.2f} ms "
                f"p99 {r[name]['p99_ms']:6.2f} ms"
                for name in ("access", "health")
            )
        )
    log(outside.describe(result))
    return {
        "gunicorn": "2 sync workers",
        "wrk": f"{outside.THREADS} threads, {outside.CONNECTIONS} connections",
        "emails": len(emails),
        "phase_seconds": args.outside_duration,
        **result,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--institutions", type=int, required=True)
    parser.add_argument("--servers", type=int, required=True)
    parser.add_argument("--users", type=int, required=True, help="approved-user rows")
    parser.add_argument("--duration", type=float, required=True)
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument(
        "--outside-rounds", type=int, default=0, help="wrk rounds (0: none)"
    )
    parser.add_argument("--outside-duration", type=int, default=2, help="seconds")
    args = parser.parse_args()

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.settings")
    django.setup()
    from django.core.management import call_command
    from django.db import connection

    from bench.seed import Sizes, seed
    from integrations.models import ApiKey

    sizes = Sizes(args.institutions, args.servers, args.users)
    started = time.monotonic()
    call_command("migrate", verbosity=0, interactive=False)
    users = seed(sizes, progress)
    seeded_s = time.monotonic() - started
    log(f"seeded {sizes.approved_users:,} approvals, {users:,} users: {seeded_s:.1f} s")
    _key, raw_key = ApiKey.objects.create_key("bench", ApiKey.Scope.ACCESS)
    queries = load_queries(users, 20_000, random.Random(7))
    queries_file = args.workdir / f"queries-{os.getpid()}.txt"
    queries_file.write_text("\n".join(queries) + "\n", encoding="utf-8")
    mean_queries, max_queries, mean_bytes = queries_per_answer(raw_key, queries)
    queries_per_bare = bare_queries()
    connection.close()

    port = free_port()
    server = start_gunicorn(port, round(mean_bytes), args.workdir)
    try:
        phases = run_rounds(port, raw_key, queries_file, args.duration, args.rounds)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
        queries_file.unlink(missing_ok=True)
    outside_result = None
    if args.outside_rounds:
        outside_result = measure_outside(raw_key, users, args)
    summary = {
        "sizes": {**sizes.as_dict(), "distinct_users": users},
        **summarise(phases),
        "queries_per_answer": mean_queries,
        "max_queries_per_answer": max_queries,
        "answer_bytes": mean_bytes,
        "queries_per_bare_answer": queries_per_bare,
        "seed_seconds": seeded_s,
        "phase_seconds": args.duration,
        "outside": outside_result,
    }
    json.dump(summary, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
