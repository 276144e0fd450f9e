"""The outside measurement: wrk against the access question and /api/v1/health.

What someone outside the project measures (issue 17): gunicorn as the README's
production line runs it (sync workers, here 2), wrk with its own default
threads and connections, the access question for a random approved email per
request among 20,000 (``Authorization: Api-Key``; bench/wrk.lua), and the
product's own health check (no credentials) in the same run. Rounds of one
phase per path, the order alternating (access health, health access, ...), so
that drift hurts neither; the ratio is each round's access req/s over its
health req/s, then the median of the rounds. On a shared machine req/s move
with everyone else's load, so each phase also counts the CPU time the server
spent per answer (gunicorn's workers, and on PostgreSQL the backends serving
its database, read from /proc): health's CPU per answer over access's is the
same comparison, measured with what other programs do left out.

``bench.measure`` runs it on its seeded registry; alone, against a server
already running:

    python -m bench.outside --port 8000 --key KEY --emails emails.txt
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.env import ACCESS_PATH

HEALTH_PATH = "/api/v1/health"
SCRIPT = Path(__file__).resolve().parent / "wrk.lua"
EMAILS = 20_000
# wrk's own defaults: what a plain `wrk URL` does.
THREADS = 2
CONNECTIONS = 10
MARKER = "WRK-JSON "


def available() -> bool:
    return shutil.which("wrk") is not None


CpuSample = dict[int, float]
_TICKS = os.sysconf("SC_CLK_TCK")


def process_cpu(pid: int) -> float | None:
    """User and system CPU seconds of a process so far (None: gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def server_cpu(
    master: int, backends: Callable[[], list[int]] | None = None
) -> Callable[[], CpuSample]:
    """A sampler of the CPU seconds of gunicorn's workers (the children of
    ``master``) and of the database backends ``backends`` names."""

    def sample() -> CpuSample:
        pids = children(master) + (backends() if backends else [])
        cpu = {pid: process_cpu(pid) for pid in pids}
        return {pid: used for pid, used in cpu.items() if used is not None}

    return sample


def postgres_backends(admin_url: str, database: str) -> Callable[[], list[int]]:
    """The pids of the PostgreSQL backends connected to ``database``."""
    import psycopg

    connection = psycopg.connect(admin_url, autocommit=True)

    def pids() -> list[int]:
        rows = connection.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s", (database,)
        ).fetchall()
        return [pid for (pid,) in rows]

    return pids


def cpu_used(before: CpuSample, after: CpuSample) -> float:
    """CPU seconds between two samples; a process started meanwhile counts
    whole, one that ended meanwhile is lost (rare: connections live 60 s)."""
    return sum(used - before.get(pid, 0.0) for pid, used in after.items())


def approved_emails(users: int, count: int, rng: random.Random) -> list[str]:
    """``count`` distinct approved emails of the seeded registry (every user
    number below ``users`` has at least one approval), as the uploader sends
    them."""
    from bench.seed import user_email

    return [user_email(n) for n in rng.sample(range(users), min(count, users))]


def phase(
    port: int,
    path: str,
    args: list[str],
    duration: int,
    threads: int,
    connections: int,
    cpu: Callable[[], CpuSample] | None = None,
) -> dict[str, Any]:
    """One wrk run of ``duration`` seconds; its numbers, latencies in ms, and
    the server's CPU µs per answer when ``cpu`` samples it."""
    before = cpu() if cpu else {}
    command = [
        "wrk",
        f"--threads={threads}",
        f"--connections={connections}",
        f"--duration={duration}s",
        "--timeout=10s",
        f"--script={SCRIPT}",
        f"http://127.0.0.1:{port}{path}",
        "--",
        *args,
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    used = cpu_used(before, cpu()) if cpu else None
    lines = [line for line in done.stdout.splitlines() if line.startswith(MARKER)]
    if not lines:
        raise SystemExit(f"wrk printed no result:\n{done.stdout}\n{done.stderr}")
    raw = json.loads(lines[-1].removeprefix(MARKER))
    errors = {
        name: raw[name]
        for name in (
            "connect_errors",
            "read_errors",
            "write_errors",
            "status_errors",
            "timeouts",
        )
        if raw[name]
    }
    return {
        "path": path,
        "requests": raw["requests"],
        "rps": raw["requests"] / (raw["duration_us"] / 1e6),
        "p50_ms": raw["p50_us"] / 1000,
        "p90_ms": raw["p90_us"] / 1000,
        "p99_ms": raw["p99_us"] / 1000,
        "max_ms": raw["max_us"] / 1000,
        "mean_bytes": raw["bytes"] / raw["requests"] if raw["requests"] else 0,
        "cpu_us": (
            used / raw["requests"] * 1e6
            if used is not None and raw["requests"]
            else None
        ),
        "errors": errors,
    }


def run_rounds(
    port: int,
    key: str,
    emails_file: Path,
    duration: int,
    rounds: int,
    threads: int = THREADS,
    connections: int = CONNECTIONS,
    cpu: Callable[[], CpuSample] | None = None,
) -> list[dict[str, dict[str, Any]]]:
    """A warm-up of each path, then ``rounds`` rounds of an access and a
    health phase, alternating which goes first. Any error (a non-2xx answer,
    a refused connection) stops the run: the comparison holds only for
    answers."""
    plans = {
        "access": (ACCESS_PATH, ["access", str(emails_file), key]),
        "health": (HEALTH_PATH, ["plain"]),
    }
    for path, args in plans.values():
        phase(port, path, args, 1, threads, connections)
    measured = []
    for number in range(rounds):
        order = ["access", "health"] if number % 2 == 0 else ["health", "access"]
        result = {}
        for name in order:
            path, args = plans[name]
            result[name] = phase(port, path, args, duration, threads, connections, cpu)
            if result[name]["errors"] or not result[name]["requests"]:
                raise SystemExit(
                    f"wrk {name}: {result[name]['requests']} answers, "
                    f"errors {result[name]['errors']}"
                )
        measured.append(result)
    return measured


def summarise(rounds: list[dict[str, dict[str, Any]]]) -> dict[str, Any]:
    """Medians over the rounds: the ratio within each round, then req/s and
    latencies per endpoint."""

    def median(name: str, value: str) -> float:
        return statistics.median(r[name][value] for r in rounds)

    ratios = [r["access"]["rps"] / r["health"]["rps"] for r in rounds]
    cpu = None
    if all(r[name]["cpu_us"] for r in rounds for name in ("access", "health")):
        cpu = {
            "cpu_ratio": statistics.median(
                r["health"]["cpu_us"] / r["access"]["cpu_us"] for r in rounds
            ),
            "access_cpu_us": median("access", "cpu_us"),
            "health_cpu_us": median("health", "cpu_us"),
        }
    return {
        "ratio": statistics.median(ratios),
        "ratio_min": min(ratios),
        "ratio_max": max(ratios),
        "access_rps": median("access", "rps"),
        "health_rps": median("health", "rps"),
        "access_p50_ms": median("access", "p50_ms"),
        "access_p99_ms": median("access", "p99_ms"),
        "health_p50_ms": median("health", "p50_ms"),
        "health_p99_ms": median("health", "p99_ms"),
        "access_bytes": median("access", "mean_bytes"),
        **(cpu or {"cpu_ratio": None}),
        "rounds": rounds,
    }


def describe(result: dict[str, Any]) -> str:
    cpu = ""
    if result.get("cpu_ratio"):
        cpu = (
            f"; server CPU per answer: access {result['access_cpu_us']:.0f} µs, "
            f"health {result['health_cpu_us']:.0f} µs (health/access "
            f"{result['cpu_ratio']:.2f})"
        )
    return (
        f"wrk access/health {result['ratio']:.2f} "
        f"(rounds {result['ratio_min']:.2f}-{result['ratio_max']:.2f}): "
        f"access {result['access_rps']:.0f}/s p50 {result['access_p50_ms']:.2f} "
        f"p99 {result['access_p99_ms']:.2f} ms, "
        f"health {result['health_rps']:.0f}/s p50 {result['health_p50_ms']:.2f} "
        f"p99 {result['health_p99_ms']:.2f} ms{cpu}"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--emails", type=Path, required=True, help="one a line")
    parser.add_argument("--duration", type=int, default=2, help="seconds per phase")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--threads", type=int, default=THREADS)
    parser.add_argument("--connections", type=int, default=CONNECTIONS)
    parser.add_argument("--pid", type=int, help="gunicorn's master: count its CPU")
    parser.add_argument(
        "--postgres", nargs=2, metavar=("ADMIN_URL", "DATABASE"), help="and these"
    )
    args = parser.parse_args(argv)
    cpu = None
    if args.pid:
        backends = postgres_backends(*args.postgres) if args.postgres else None
        cpu = server_cpu(args.pid, backends)
    rounds = run_rounds(
        args.port,
        args.key,
        args.emails,
        args.duration,
        args.rounds,
        args.threads,
        args.connections,
        cpu,
    )
    result = summarise(rounds)
    for r in rounds:
        print(
            " | ".join(
                f"{name} {r[name]['rps']:5.0f}/s p50 {r[name]['p50_ms']:5.2f} "
                f"p99 {r[name]['p99_ms']:6.2f} ms"
                for name in ("access", "health")
            ),
            file=sys.stderr,
        )
    print(describe(result), file=sys.stderr)
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
