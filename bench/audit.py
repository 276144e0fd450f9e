"""The audit export's memory: a year of history for many approvals, streamed
as CSV through the view, against the same export of a tenth of the rows.

A fresh SQLite file (or the PostgreSQL of ``--database-url``) with N approval
"created" records spread over a year, a "changed" record for one in ten (so
before/after reads the previous record) and the gate's daily use for one in
ten, all written with ``bulk_create`` on the historical models. Then
``GET /api/v1/audit/?format=csv`` through Django's test client, as a staffer,
reading the stream line by line: the peak of Python's allocations
(tracemalloc) and of the process's resident memory (sampled) above what they
were before the export. Streamed, the full export's peak is the tenth's
(ratio ≈ 1); a list in memory would make it ten times larger.

    python -m bench.audit --approvals 100000
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import tracemalloc
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.env import base_env

MAX_RATIO = 1.5
BATCH = 20_000
YEAR_START = datetime(2025, 1, 1, tzinfo=UTC)


def _rss() -> int:
    """Resident memory in bytes, now."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE")


def seed(approvals: int) -> int:
    from integrations.models import ApprovedUser, DicomWebServer, EdgeUsage, Institution

    history = ApprovedUser.history.model
    institutions = Institution.objects.bulk_create(
        Institution(name=f"Bench hospital {n}") for n in range(100)
    )
    servers = DicomWebServer.objects.bulk_create(
        DicomWebServer(
            institution=institutions[n % 100],
            name=f"Archive {n}",
            qido_url=f"https://pacs{n}.example.org/dicomweb",
            wado_url=f"https://pacs{n}.example.org/dicomweb",
        )
        for n in range(1000)
    )
    step = timedelta(days=365) / approvals
    written = 0
    for start in range(0, approvals, BATCH):
        records, usage = [], []
        for n in range(start, min(start + BATCH, approvals)):
            email = f"user{n}@site{n % 997}.example.org"
            server = servers[n % len(servers)].pk
            when = YEAR_START + step * n
            fields = {
                "id": n + 1,
                "server_id": server,
                "email": email,
                "email_key": email,
                "created_at": when,
                "history_actor": "api-key:bench",
            }
            records.append(history(**fields, history_date=when, history_type="+"))
            if n % 10 == 0:
                records.append(
                    history(
                        **fields,
                        expires_at=when + timedelta(days=90),
                        history_date=when + timedelta(days=30),
                        history_type="~",
                    )
                )
                usage.append(
                    EdgeUsage(
                        server_id=server,
                        email=email,
                        day=(when + timedelta(days=1)).date(),
                        granted=n % 50 + 1,
                        last_used_at=when + timedelta(days=1),
                    )
                )
        history.objects.bulk_create(records, batch_size=2000)
        EdgeUsage.objects.bulk_create(usage, batch_size=2000)
        written += len(records) + len(usage)
        print(f"  seeded {min(start + BATCH, approvals):,} approvals", file=sys.stderr)
    return written


def export(client: Any, until: str | None) -> dict[str, Any]:
    """One CSV export through the view; memory above the starting point."""
    query = {"format": "csv", **({"until": until} if until else {})}
    rss_before = _rss()
    rss_peak = rss_before
    tracemalloc.start()
    started = time.monotonic()
    response = client.get("/api/v1/audit/", query)
    assert response.status_code == 200, response.status_code
    lines = 0
    size = 0
    for chunk in response.streaming_content:
        lines += 1
        size += len(chunk)
        if lines % 20_000 == 0:
            rss_peak = max(rss_peak, _rss())
    seconds = time.monotonic() - started
    _current, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rss_peak = max(rss_peak, _rss())
    return {
        "rows": lines - 1,
        "bytes": size,
        "seconds": round(seconds, 1),
        "python_peak_mb": round(peak / 2**20, 2),
        "rss_growth_mb": round((rss_peak - rss_before) / 2**20, 2),
    }


def run(approvals: int, database_url: str | None) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-audit-") as folder:
        env = base_env()
        os.environ.update(env)
        if database_url:
            os.environ["DATABASE_URL"] = database_url
        else:
            os.environ["SQLITE_PATH"] = str(Path(folder) / "audit.sqlite3")
        import django

        django.setup()
        from django.contrib.auth import get_user_model
        from django.core.management import call_command
        from django.db import connection
        from django.test import Client

        call_command("migrate", verbosity=0)
        started = time.monotonic()
        written = seed(approvals)
        seeded = time.monotonic() - started
        staffer = get_user_model().objects.create_superuser("bench", "b@x.org")
        client = Client()
        client.force_login(staffer)
        # A tenth of the year: about a tenth of the rows.
        tenth = (YEAR_START + timedelta(days=36.5)).isoformat()
        export(client, YEAR_START.isoformat())  # warm-up: imports, URLconf
        floor = export(client, tenth)
        full = export(client, None)
        vendor = connection.vendor
    ratio = full["python_peak_mb"] / max(floor["python_peak_mb"], 0.01)
    return {
        "database": vendor,
        "approvals": approvals,
        "rows_written": written,
        "seed_seconds": round(seeded, 1),
        "floor": floor,
        "full": full,
        "ratio": round(ratio, 2),
        "target": f"python peak full/tenth {ratio:.2f} (≤ {MAX_RATIO}) "
        + ("✓" if ratio <= MAX_RATIO else "✗"),
    }


def table(result: dict[str, Any]) -> str:
    lines = [
        f"The audit export as CSV ({result['database']}, {result['approvals']:,} "
        "approvals over a year):"
    ]
    for label in ("floor", "full"):
        row = result[label]
        lines.append(
            f"  {label:<6}{row['rows']:>10,} rows {row['seconds']:>7.1f} s  "
            f"python peak {row['python_peak_mb']:>6.2f} MB  "
            f"RSS +{row['rss_growth_mb']:.1f} MB"
        )
    lines.append(f"  {result['target']}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--approvals", type=int, default=1_000_000)
    parser.add_argument("--database-url", help="an empty PostgreSQL database")
    args = parser.parse_args()
    result = run(args.approvals, args.database_url)
    print(table(result), file=sys.stderr)
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
