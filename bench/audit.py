"""The audit export's memory and speed: a year of history for many approvals,
streamed as CSV through the view, against the export of a part of the year.

A fresh SQLite file (or the PostgreSQL of ``--database-url``) with N approval
"created" records spread over a year, a "changed" record for one in ten (so
before/after reads the previous record) and the gate's daily use for one in
ten, all written with ``bulk_create`` on the historical models. Then
``GET /api/v1/audit/?format=csv`` through Django's test client, as a staffer,
reading the stream piece by piece: the peak of Python's allocations
(tracemalloc) and of the process's resident memory (sampled) above what they
were before the export, against the export of the year's first tenth (more,
when a tenth holds less than one chunk of every table). Streamed, the full
export's peak is the part's (ratio ≈ 1); a list in memory would make it ten
times larger. Then speed, untraced: the full export's rows per second against
merely reading the same rows through the ORM in the same run.

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
# One approval in this many also gets a "changed" record and a day of use.
ONE_IN = 10
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
            if n % ONE_IN == 0:
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


def export(client: Any, until: str | None, trace: bool) -> dict[str, Any]:
    """One CSV export through the view, read piece by piece: its rows and
    time, and with ``trace`` the memory above the starting point (tracemalloc
    slows the export several times, so speed is timed untraced)."""
    query = {"format": "csv", **({"until": until} if until else {})}
    rss_before = _rss()
    rss_peak = rss_before
    if trace:
        tracemalloc.start()
    started = time.monotonic()
    response = client.get("/api/v1/audit/", query)
    assert response.status_code == 200, response.status_code
    lines = 0
    size = 0
    for pieces, piece in enumerate(response.streaming_content, start=1):
        # The seeded rows hold no line breaks inside a cell.
        lines += piece.count(b"\r\n")
        size += len(piece)
        if pieces % 64 == 0:
            rss_peak = max(rss_peak, _rss())
    seconds = time.monotonic() - started
    result = {
        "rows": lines - 1,
        "bytes": size,
        "seconds": round(seconds, 2),
        "rows_per_second": round((lines - 1) / seconds),
    }
    if trace:
        _current, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        rss_peak = max(rss_peak, _rss())
        result["python_peak_mb"] = round(peak / 2**20, 2)
        result["rss_growth_mb"] = round((rss_peak - rss_before) / 2**20, 2)
    return result


def read_rows() -> dict[str, Any]:
    """The speed floor: merely reading every row the export shows, through
    the ORM in the export's order and chunks, building nothing."""
    from integrations.auditexport import CHUNK
    from integrations.models import ApprovedUser, DicomWebServer, EdgeUsage, Institution

    started = time.monotonic()
    count = 0
    for model in (Institution, DicomWebServer, ApprovedUser):
        records = model.history.model.objects.order_by("history_date", "history_id")
        for _row in records.values_list().iterator(chunk_size=CHUNK):
            count += 1
    for _row in (
        EdgeUsage.objects.order_by("day", "id").values_list().iterator(chunk_size=CHUNK)
    ):
        count += 1
    seconds = time.monotonic() - started
    return {
        "rows": count,
        "seconds": round(seconds, 2),
        "rows_per_second": round(count / seconds),
    }


def floor_share(approvals: int) -> float:
    """The part of the year the memory floor exports: a tenth, or more when
    a tenth would hold less than one chunk of every table (the smallest, the
    gate's use, has a row per ``ONE_IN`` approvals), so the floor's peak is a
    full chunk's. A fifth more than exactly one chunk: the rows are spread
    evenly, but the part's end falls anywhere in a day."""
    from integrations.auditexport import CHUNK

    smallest_table_per_approval = 1 / ONE_IN
    exactly_one_chunk = CHUNK / (smallest_table_per_approval * max(approvals, 1))
    return min(1.0, max(0.1, 1.2 * exactly_one_chunk))


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
        share = floor_share(approvals)
        first_part = (YEAR_START + timedelta(days=365 * share)).isoformat()
        export(client, YEAR_START.isoformat(), trace=False)  # warm-up: imports
        floor = export(client, first_part, trace=True)
        full = export(client, None, trace=True)
        read = read_rows()
        timed = export(client, None, trace=False)
        vendor = connection.vendor
    ratio = full["python_peak_mb"] / max(floor["python_peak_mb"], 0.01)
    slower = timed["seconds"] / max(read["seconds"], 0.001)
    return {
        "database": vendor,
        "approvals": approvals,
        "rows_written": written,
        "seed_seconds": round(seeded, 1),
        "floor_share": round(share, 3),
        "floor": floor,
        "full": full,
        "ratio": round(ratio, 2),
        "target": f"python peak full/floor {ratio:.2f} (≤ {MAX_RATIO}) "
        + ("✓" if ratio <= MAX_RATIO else "✗"),
        "read": read,
        "timed": timed,
        "export_over_read": round(slower, 2),
    }


def table(result: dict[str, Any]) -> str:
    lines = [
        f"The audit export as CSV ({result['database']}, {result['approvals']:,} "
        "approvals over a year):",
        f"  memory (tracemalloc on), the first {result['floor_share']:.0%} of the "
        "year against all of it:",
    ]
    for label in ("floor", "full"):
        row = result[label]
        lines.append(
            f"    {label:<6}{row['rows']:>10,} rows  "
            f"python peak {row['python_peak_mb']:>6.2f} MB  "
            f"RSS +{row['rss_growth_mb']:.1f} MB"
        )
    lines.append(f"    {result['target']}")
    read, timed = result["read"], result["timed"]
    lines += [
        "  speed (untraced), the export against merely reading its rows:",
        f"    read  {read['rows']:>10,} rows {read['seconds']:>7.2f} s "
        f"{read['rows_per_second']:>9,} rows/s",
        f"    export{timed['rows']:>10,} rows {timed['seconds']:>7.2f} s "
        f"{timed['rows_per_second']:>9,} rows/s",
        f"    export/read time {result['export_over_read']:.2f}",
    ]
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
