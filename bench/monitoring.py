"""The monitoring benchmark: one round over N simulated archives through real
Celery workers on Redis.

A fresh database with N active servers whose URLs are distinct roots of one
DICOMweb stub on loopback (bench/stub.py, its own process;
CONNECTIVITY_ALLOW_PRIVATE=1), a Celery worker (prefork, ``--concurrency``
processes, each task checking MONITOR_CHECK_THREADS servers at once) on Redis
database 14 with a queue of its own, then ``manage.py monitor --once``:
dispatch, the workers' checks, the bulk writes. Reports checks per second,
p50/p99 check time and the time for 10,000 servers.

``python -m bench --monitoring-only`` (or ``make bench-monitoring``) runs it
alone; ``python -m bench.monitoring --servers 2000`` for a quicker look.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from bench.env import ROOT, base_env

BENCH_DIR = Path(__file__).resolve().parent
REDIS = "redis://127.0.0.1:6379/14"
TARGET_SECONDS = 300  # 10,000 servers in under 5 minutes
DEFAULT_POSTGRES = "postgres://postgres@127.0.0.1:5432/postgres"

SEED = """
from integrations.models import DicomWebServer, Institution
count, base = COUNT, BASE
institutions = Institution.objects.bulk_create(
    Institution(name=f"Bench hospital {n}") for n in range((count + 4) // 5)
)
DicomWebServer.objects.bulk_create(
    (
        DicomWebServer(
            institution=institutions[n // 5], name=f"Archive {n}", status="active",
            qido_url=f"{base}/archive/{n}/dicom-web",
            wado_url=f"{base}/archive/{n}/dicom-web",
        )
        for n in range(count)
    ),
    batch_size=1000,
)
"""

STATS = """
from integrations.models import ConnectivityCheck, ServerHealth
import json
rows = list(ServerHealth.objects.values_list("state", "last_check_seconds"))
print(json.dumps({
    "states": {s: sum(1 for r in rows if r[0] == s) for s in {r[0] for r in rows}},
    "seconds": [r[1] for r in rows if r[1] is not None],
    "check_rows": ConnectivityCheck.objects.count(),
}))
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def manage(env: dict[str, str], *args: str, timeout: float = 900) -> str:
    done = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if done.returncode != 0:
        raise RuntimeError(f"manage.py {args[0]} failed:\n{done.stdout}{done.stderr}")
    return done.stdout


@contextmanager
def process_group(args: list[str], env: dict[str, str], log: Path) -> Iterator[Any]:
    with log.open("wb") as out:
        process = subprocess.Popen(
            args,
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield process
    finally:
        with suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        with suppress(subprocess.TimeoutExpired):
            process.wait(timeout=15)
        with suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def wait_for_line(log: Path, text: str, process: Any, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if text in log.read_text(errors="replace"):
            return
        if process.poll() is not None:
            break
        time.sleep(0.2)
    raise RuntimeError(f"{log.name}: no {text!r}:\n{log.read_text()[-2000:]}")


@contextmanager
def database(vendor: str, workdir: Path) -> Iterator[dict[str, str]]:
    if vendor == "sqlite":
        path = workdir / "monitoring.sqlite3"
        for leftover in workdir.glob(f"{path.name}*"):
            leftover.unlink()
        try:
            yield {"SQLITE_PATH": str(path)}
        finally:
            for leftover in workdir.glob(f"{path.name}*"):
                leftover.unlink()
        return
    import psycopg

    admin = os.environ.get("BENCH_POSTGRES_URL", DEFAULT_POSTGRES)
    name = f"bench_monitoring_{os.getpid()}"
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}"')
        connection.execute(f'CREATE DATABASE "{name}"')
    try:
        yield {"DATABASE_URL": admin.rsplit("/", 1)[0] + f"/{name}"}
    finally:
        with psycopg.connect(admin, autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def run(
    servers: int,
    *,
    vendor: str = "sqlite",
    concurrency: int = 2,
    threads: int = 16,
    batch: int = 50,
    workdir: Path | None = None,
) -> dict[str, Any]:
    workdir = workdir or BENCH_DIR / "work"
    workdir.mkdir(exist_ok=True)
    queue = f"bench-monitoring-{os.getpid()}"
    stub_port = free_port()
    with database(vendor, workdir) as db_env:
        env = base_env()
        env.update(
            db_env,
            DJANGO_SETTINGS_MODULE="pacsbin_integrations.settings",
            CONNECTIVITY_ALLOW_PRIVATE="1",
            CELERY_BROKER_URL=REDIS,
            MONITOR_QUEUE=queue,
            MONITOR_BATCH_SIZE=str(batch),
            MONITOR_CHECK_THREADS=str(threads),
            DJANGO_EMAIL_BACKEND="django.core.mail.backends.locmem.EmailBackend",
        )
        print(f"== monitoring: {servers:,} servers on {vendor}", file=sys.stderr)
        manage(env, "migrate", "--no-input")
        seed = SEED.replace("COUNT", str(servers)).replace(
            "BASE", repr(f"http://127.0.0.1:{stub_port}")
        )
        manage(env, "shell", "-c", seed)
        worker = [
            *[sys.executable, "-m", "celery", "-A", "pacsbin_integrations", "worker"],
            *["--pool", "prefork", "--concurrency", str(concurrency), "-Q", queue],
            *["-n", f"{queue}@%h", "--without-gossip", "--without-mingle"],
            *["--without-heartbeat", "-l", "INFO"],
        ]
        stub = [sys.executable, "-m", "bench.stub", "--port", str(stub_port)]
        try:
            with (
                process_group(stub, env, workdir / "stub.log") as stub_process,
                process_group(worker, env, workdir / "worker.log") as worker_process,
            ):
                wait_for_line(workdir / "stub.log", "stub on", stub_process)
                wait_for_line(workdir / "worker.log", " ready.", worker_process)
                started = time.monotonic()
                out = manage(env, "monitor", "--once", "--wait", "900", timeout=1000)
                seconds = time.monotonic() - started
        finally:
            import redis

            client = redis.Redis.from_url(REDIS)
            for key in client.scan_iter(f"*{queue}*"):
                client.delete(key)
        stats = json.loads(manage(env, "shell", "-c", STATS).strip().splitlines()[-1])
    durations = sorted(stats["seconds"])
    rate = len(durations) / seconds
    return {
        "servers": servers,
        "database": vendor,
        "workers": f"1 Celery worker, prefork x{concurrency}, "
        f"{threads} checks at once per task, batches of {batch}",
        "seconds": round(seconds, 1),
        "checks_per_second": round(rate, 1),
        "p50_check_ms": round(statistics.median(durations) * 1000, 1),
        "p99_check_ms": round(durations[int(len(durations) * 0.99) - 1] * 1000, 1),
        "seconds_for_10000": round(10_000 / rate, 1),
        "states": stats["states"],
        "check_rows": stats["check_rows"],
        "summary": out.strip().splitlines()[0],
    }


def table(result: dict[str, Any]) -> str:
    verdict = "✓" if result["seconds_for_10000"] < TARGET_SECONDS else "✗"
    return "\n".join(
        [
            f"monitoring ({result['database']}; {result['workers']}):",
            f"  {result['servers']:,} servers in {result['seconds']:.1f} s: "
            f"{result['checks_per_second']:.0f} checks/s, check p50 "
            f"{result['p50_check_ms']:.0f} ms, p99 {result['p99_check_ms']:.0f} ms",
            f"  states {result['states']}; {result['check_rows']:,} check rows",
            f"  10,000 servers in {result['seconds_for_10000']:.0f} s "
            f"(< {TARGET_SECONDS} s) {verdict}",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--servers", type=int, default=10_000)
    parser.add_argument(
        "--database", default="sqlite", choices=["sqlite", "postgresql"]
    )
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--threads", type=int, default=16)
    parser.add_argument("--batch", type=int, default=50)
    args = parser.parse_args()
    result = run(
        args.servers,
        vendor=args.database,
        concurrency=args.concurrency,
        threads=args.threads,
        batch=args.batch,
    )
    (BENCH_DIR / "last-monitoring.json").write_text(json.dumps(result, indent=2) + "\n")
    print(table(result))


if __name__ == "__main__":
    main()
