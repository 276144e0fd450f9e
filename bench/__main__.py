"""``make bench``: the access question against its floor and against a bare
Django endpoint of one query, on SQLite and PostgreSQL.

For each database: a fresh database (a new SQLite file; a new PostgreSQL
database ``bench_<pid>``, dropped afterwards), a synthetic registry, gunicorn
with production settings (``bench.settings``: the product's, plus the bench's
URLconf), and rounds of load phases. Writes bench/last.json (``--quick``:
bench/last-quick.json) and prints a table.
``--quick``: 100,000 users and shorter phases (about 3 minutes). For each
database, wrk then compares the access question with /api/v1/health as an
outside load test does (bench/outside.py: gunicorn with 2 sync workers).

Then the gate at the edge (bench/edge.py): requests through nginx, gated with
decisions cached against ungated (``--no-edge`` skips it); and the gate at the
registry (bench/gate.py, ``--no-gate`` skips it): the access answer with a
token per answer against without, and edge decisions per second through
gunicorn with the decision cache warm and off.

Then the audit export on each database (bench/audit.py): a year of history
for 1,000,000 approvals (``--quick``: 100,000) streamed as CSV, its memory
against a part of the year and its speed against merely reading the rows
(``--no-audit`` skips it).

Then the monitoring section (bench/monitoring.py): one round over 10,000
simulated archives through real Celery workers on Redis. ``--monitoring-only``
runs just that (writes bench/last-monitoring.json); ``--no-monitoring`` skips it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench import audit, edge, gate, monitoring
from bench.env import ACCESS_PATH, BARE_PATH, FLOOR_PATH, ROOT, base_env

BENCH_DIR = Path(__file__).resolve().parent
WORKDIR = BENCH_DIR / "work"
DEFAULT_POSTGRES = "postgres://postgres@127.0.0.1:5432/postgres"

FULL = {"institutions": 2_000, "servers": 10_000, "users": 1_000_000}
QUICK = {"institutions": 2_000, "servers": 10_000, "users": 100_000}
SMALL = {"institutions": 2_000, "servers": 10_000, "users": 1_000}

# The targets: against the floor (the access stack answering a constant), and
# against the bare endpoint (Django and one query), where an outside load test
# comparing the access answer with /api/v1/health stands.
MIN_RATIO = 0.80
MIN_RATIO_BARE = 0.75
MAX_P50_OVER_FLOOR_MS = 1.0
MAX_P99_GROWTH = 1.5
MAX_QUERIES = 1
# wrk's access/health through 2 sync workers: what someone outside sees.
MIN_RATIO_OUTSIDE = 0.9


def postgres_database(admin_url: str, name: str, create: bool) -> bool:
    import psycopg

    try:
        with psycopg.connect(admin_url, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
            if create:
                conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError as exc:
        print(f"PostgreSQL unavailable ({exc}); skipping it.", file=sys.stderr)
        return False
    return True


@contextmanager
def scratch_postgres(name: str) -> Iterator[str | None]:
    """A fresh PostgreSQL database's URL (None: no PostgreSQL answers),
    dropped after."""
    admin_url = os.environ.get("BENCH_POSTGRES_URL", DEFAULT_POSTGRES)
    if not postgres_database(admin_url, name, create=True):
        yield None
        return
    try:
        yield admin_url.rsplit("/", 1)[0] + f"/{name}"
    finally:
        postgres_database(admin_url, name, create=False)


def measure(
    label: str,
    env: dict[str, str],
    size: dict[str, int],
    args: Any,
    outside_rounds: int,
) -> dict:
    command = [
        sys.executable,
        "-m",
        "bench.measure",
        f"--institutions={size['institutions']}",
        f"--servers={size['servers']}",
        f"--users={size['users']}",
        f"--duration={args.duration}",
        f"--rounds={args.rounds}",
        f"--workdir={WORKDIR}",
        f"--outside-rounds={outside_rounds}",
        f"--outside-duration={args.outside_duration}",
    ]
    print(f"== {label}: {size['users']:,} approved users", file=sys.stderr)
    done = subprocess.run(
        command,
        cwd=ROOT,
        env=dict(env, BENCH_LABEL=label),
        stdout=subprocess.PIPE,
        text=True,
        check=True,
    )
    return json.loads(done.stdout)


def run_database(
    vendor: str, size: dict[str, int], args: Any, outside_rounds: int = 0
) -> dict | None:
    env = base_env()
    label = f"{vendor} {size['users']:,}"
    if vendor == "sqlite":
        path = WORKDIR / f"bench-{size['users']}.sqlite3"
        for leftover in WORKDIR.glob(f"{path.name}*"):
            leftover.unlink()
        env["SQLITE_PATH"] = str(path)
        try:
            return measure(label, env, size, args, outside_rounds)
        finally:
            for leftover in WORKDIR.glob(f"{path.name}*"):
                leftover.unlink()
    with scratch_postgres(f"bench_{os.getpid()}_{size['users']}") as url:
        if url is None:
            return None
        env["DATABASE_URL"] = url
        return measure(label, env, size, args, outside_rounds)


def machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "system": f"{platform.system()} {platform.release()}",
    }


def verdicts(result: dict[str, Any], small: dict[str, Any] | None) -> list[str]:
    """Each target with the measured value, ✓ or ✗."""

    def mark(ok: bool) -> str:
        return "✓" if ok else "✗"

    lines = [
        f"ratio {result['ratio']:.2f} (≥ {MIN_RATIO}) "
        + mark(result["ratio"] >= MIN_RATIO),
        f"access/bare {result['ratio_bare']:.2f} (≥ {MIN_RATIO_BARE}) "
        + mark(result["ratio_bare"] >= MIN_RATIO_BARE),
        f"p50 {result['p50_over_floor_ms']:+.2f} ms over the floor "
        f"(≤ +{MAX_P50_OVER_FLOOR_MS:.0f} ms) "
        + mark(result["p50_over_floor_ms"] <= MAX_P50_OVER_FLOOR_MS),
        f"{result['max_queries_per_answer']} SQL queries per answer "
        f"(≤ {MAX_QUERIES}) " + mark(result["max_queries_per_answer"] <= MAX_QUERIES),
    ]
    if result.get("outside"):
        ratio = result["outside"]["ratio"]
        lines.append(
            f"wrk access/health {ratio:.2f} (≥ {MIN_RATIO_OUTSIDE}) "
            + mark(ratio >= MIN_RATIO_OUTSIDE)
        )
    if small:
        growth = result["p99_ms"] / small["p99_ms"]
        lines.append(
            f"p99 ×{growth:.2f} of p99 at {small['sizes']['approved_users']:,} users "
            f"(≤ ×{MAX_P99_GROWTH}) " + mark(growth <= MAX_P99_GROWTH)
        )
    return lines


def table(report: dict[str, Any]) -> str:
    header = (
        f"{'database':<11}{'users':>10}{'access/s':>10}{'floor/s':>9}{'bare/s':>8}"
        f"{'a/floor':>8}{'a/bare':>7}{'p50 ms':>8}{'floor p50':>10}{'p50 gap':>8}"
        f"{'p99 ms':>8}{'floor p99':>10}{'SQL/ans':>8}"
    )
    lines = [header, "-" * len(header)]
    for vendor, result in report["databases"].items():
        rows = [result] + ([result["small"]] if result.get("small") else [])
        for row in rows:
            lines.append(
                f"{vendor:<11}{row['sizes']['approved_users']:>10,}"
                f"{row['access_rps']:>10.0f}{row['floor_rps']:>9.0f}"
                f"{row['bare_rps']:>8.0f}{row['ratio']:>8.2f}{row['ratio_bare']:>7.2f}"
                f"{row['p50_ms']:>8.2f}{row['floor_p50_ms']:>10.2f}"
                f"{row['p50_over_floor_ms']:>+8.2f}"
                f"{row['p99_ms']:>8.2f}{row['floor_p99_ms']:>10.2f}"
                f"{row['queries_per_answer']:>8.2f}"
            )
    outside_rows = {v: r["outside"] for v, r in report["databases"].items()}
    if any(outside_rows.values()):
        header = (
            f"{'wrk':<11}{'access/s':>10}{'health/s':>9}{'ratio':>7}{'rounds':>11}"
            f"{'a p50':>7}{'a p99':>7}{'h p50':>7}{'h p99':>7}"
            f"{'a CPU µs':>9}{'h CPU µs':>9}{'CPU h/a':>8}"
        )
        lines += ["", header, "-" * len(header)]
        for vendor, row in outside_rows.items():
            if row:
                lines.append(
                    f"{vendor:<11}{row['access_rps']:>10.0f}{row['health_rps']:>9.0f}"
                    f"{row['ratio']:>7.2f}"
                    f"{row['ratio_min']:>6.2f}-{row['ratio_max']:.2f}"
                    f"{row['access_p50_ms']:>7.2f}{row['access_p99_ms']:>7.2f}"
                    f"{row['health_p50_ms']:>7.2f}{row['health_p99_ms']:>7.2f}"
                    + (
                        f"{row['access_cpu_us']:>9.0f}{row['health_cpu_us']:>9.0f}"
                        f"{row['cpu_ratio']:>8.2f}"
                        if row.get("cpu_ratio")
                        else ""
                    )
                )
    lines.append("")
    for vendor, result in report["databases"].items():
        lines.append(f"{vendor}: " + "; ".join(result["targets"]))
    return "\n".join(lines)


def run_section(title: str, module: str, *args: str) -> dict[str, Any]:
    """A section (bench/edge.py, gate.py, audit.py) in its own process: it sets
    Django up for itself; its JSON result."""
    print(f"== {title}", file=sys.stderr)
    done = subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=ROOT,
        env=base_env(),
        stdout=subprocess.PIPE,
        text=True,
        check=True,
    )
    return json.loads(done.stdout)


def run_audit(quick: bool, vendors: list[str]) -> dict[str, Any]:
    """The audit export on each database: SQLite in a fresh file, PostgreSQL
    in a database of its own (dropped after)."""
    approvals = "100000" if quick else "1000000"
    results: dict[str, Any] = {}
    for vendor in vendors:
        args = ["--approvals", approvals]
        title = f"the audit export's memory and speed ({vendor})"
        if vendor != "postgresql":
            results[vendor] = run_section(title, "bench.audit", *args)
            continue
        with scratch_postgres(f"bench_{os.getpid()}_audit") as url:
            if url is not None:
                results[vendor] = run_section(
                    title, "bench.audit", *args, "--database-url", url
                )
    return results


def run_edge(quick: bool) -> dict[str, Any]:
    rounds = "6" if quick else "12"
    return run_section("the gate through nginx", "bench.edge", "--rounds", rounds)


def run_gate(quick: bool) -> dict[str, Any]:
    """Its own database: the access answer with tokens, and edge verify."""
    rounds, duration = ("6", "2") if quick else ("12", "3")
    return run_section(
        "the gate at the registry (access with tokens, verify)",
        "bench.gate",
        *["--rounds", rounds, "--duration", duration],
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--users", type=int, help="approved-user rows (override)")
    parser.add_argument("--monitoring-only", action="store_true")
    parser.add_argument("--no-monitoring", action="store_true")
    parser.add_argument("--no-edge", action="store_true")
    parser.add_argument("--no-audit", action="store_true")
    parser.add_argument("--no-gate", action="store_true")
    parser.add_argument(
        "--monitoring-servers", type=int, default=10_000, help="simulated archives"
    )
    args = parser.parse_args()
    if args.monitoring_only:
        monitored = monitoring.run(args.monitoring_servers, workdir=WORKDIR)
        (BENCH_DIR / "last-monitoring.json").write_text(
            json.dumps(monitored, indent=2) + "\n"
        )
        print(monitoring.table(monitored))
        shutil.rmtree(WORKDIR, ignore_errors=True)
        return
    size = dict(QUICK if args.quick else FULL)
    if args.users:
        size["users"] = args.users
    # Several short rounds rather than a few long ones: the machine may be
    # shared, and the median of many rounds shrugs off a burst of other work.
    # Multiples of 6: each of the 3 paths' 6 orders equally often.
    args.duration = 1.5 if args.quick else 2.0
    args.rounds = 12 if args.quick else 18
    # wrk: whole seconds; alternating access/health rounds.
    args.outside_duration = 2 if args.quick else 3
    outside_rounds = 8 if args.quick else 12
    WORKDIR.mkdir(exist_ok=True)
    started = time.monotonic()
    # Production static files (the manifest), as a deployment would have them.
    subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--no-input", "-v0"],
        cwd=ROOT,
        env=base_env(),
        check=True,
    )
    report: dict[str, Any] = {
        "quick": args.quick,
        "machine": machine(),
        "gunicorn": "2 workers, gthread x4, keep-alive",
        "load": "2 processes x 2 threads, keep-alive, loopback",
        "outside": "wrk (bench/wrk.lua) vs /api/v1/health, gunicorn 2 sync workers",
        "paths": {"access": ACCESS_PATH, "floor": FLOOR_PATH, "bare": BARE_PATH},
        "databases": {},
    }
    for vendor in args.databases.split(","):
        result = run_database(vendor, size, args, outside_rounds)
        if result is None:
            report["databases"][vendor] = None
            continue
        # The p99 target compares with a registry of 1,000 users.
        small = None if args.quick else run_database(vendor, SMALL, args)
        result["small"] = small
        result["targets"] = verdicts(result, small)
        result["targets_missed"] = [t for t in result["targets"] if t.endswith("✗")]
        report["databases"][vendor] = result
    report["databases"] = {k: v for k, v in report["databases"].items() if v}
    if not args.no_edge:
        report["edge"] = run_edge(quick=args.quick)
    if not args.no_audit:
        report["audit"] = run_audit(args.quick, args.databases.split(","))
    if not args.no_gate:
        report["gate"] = run_gate(quick=args.quick)
    if not args.no_monitoring:
        report["monitoring"] = monitoring.run(args.monitoring_servers, workdir=WORKDIR)
    report["seconds"] = round(time.monotonic() - started, 1)
    # A quick run never replaces the full run the README quotes.
    last = "last-quick.json" if args.quick else "last.json"
    (BENCH_DIR / last).write_text(json.dumps(report, indent=2) + "\n")
    print(table(report))
    if report.get("edge"):
        print()
        print(edge.table(report["edge"]))
    for result in (report.get("audit") or {}).values():
        print()
        print(audit.table(result))
    if report.get("gate"):
        print()
        print(gate.table(report["gate"]))
    if report.get("monitoring"):
        print()
        print(monitoring.table(report["monitoring"]))
    print(f"\n{report['seconds']:.0f} s; details in bench/{last}")
    shutil.rmtree(WORKDIR, ignore_errors=True)


if __name__ == "__main__":
    main()
