"""A synthetic registry for the benchmark, inserted in batches.

Deterministic (a fixed random seed): the same sizes give the same rows, so runs
compare. Most users have a few servers, one in a hundred has dozens. The rows
are written with plain INSERTs (COPY on PostgreSQL), not through the ORM and
without audit history: they are test data, and a million ORM objects would make
seeding, not serving, the slow part of the benchmark.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from datetime import datetime

from django.db import connection, transaction
from django.utils import timezone

from integrations.models import ApprovedUser, DicomWebServer, Institution

BATCH = 20_000
STATUS_WEIGHTS = [
    (DicomWebServer.Status.ACTIVE, 8),
    (DicomWebServer.Status.PENDING, 1),
    (DicomWebServer.Status.SUSPENDED, 1),
]

Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class Sizes:
    institutions: int
    servers: int
    approved_users: int

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def user_email(number: int) -> str:
    """The normalised address of synthetic user ``number`` (its key too)."""
    return f"user{number}@site{number % 997}.example.org"


def servers_per_user(rng: random.Random, number: int) -> int:
    return rng.randint(20, 60) if number % 100 == 0 else rng.randint(1, 6)


def approvals(sizes: Sizes, rng: random.Random) -> Iterator[tuple[int, int]]:
    """(user number, server index) pairs, exactly ``sizes.approved_users``."""
    remaining = sizes.approved_users
    number = 0
    while remaining > 0:
        wanted = min(servers_per_user(rng, number), remaining, sizes.servers)
        for server in rng.sample(range(sizes.servers), wanted):
            yield number, server
        remaining -= wanted
        number += 1


def seed(sizes: Sizes, progress: Progress | None = None) -> int:
    """Fill an empty registry; answers the number of distinct users."""
    rng = random.Random(20261128)
    now = timezone.now()
    with transaction.atomic():
        institutions = Institution.objects.bulk_create(
            [
                Institution(name=f"Institution {n:05d}", created_at=now)
                for n in range(sizes.institutions)
            ],
            batch_size=BATCH,
        )
        statuses = [status for status, weight in STATUS_WEIGHTS for _ in range(weight)]
        servers = DicomWebServer.objects.bulk_create(
            [
                DicomWebServer(
                    institution=institutions[n % sizes.institutions],
                    name=f"Server {n:06d}",
                    qido_url=f"https://pacs{n}.site{n % 997}.example.org/dicomweb",
                    wado_url=f"https://pacs{n}.site{n % 997}.example.org/dicomweb",
                    status=statuses[rng.randrange(len(statuses))],
                )
                for n in range(sizes.servers)
            ],
            batch_size=BATCH,
        )
        server_ids = [server.pk for server in servers]
        if progress:
            progress("servers", sizes.servers, sizes.servers)
        users = _insert_approvals(
            ((user, server_ids[index]) for user, index in approvals(sizes, rng)),
            sizes.approved_users,
            now,
            progress,
        )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    return users


def _insert_approvals(
    pairs: Iterator[tuple[int, int]],
    total: int,
    now: datetime,
    progress: Progress | None,
) -> int:
    table = ApprovedUser._meta.db_table
    stamp = (
        now
        if connection.vendor == "postgresql"
        else (connection.ops.adapt_datetimefield_value(now))
    )
    columns = "server_id, email, email_key, created_at"
    users = 0
    done = 0

    def rows() -> Iterator[tuple[int, str, str, datetime | str | None]]:
        nonlocal users, done
        for user, server_id in pairs:
            users = max(users, user + 1)
            email = user_email(user)
            done += 1
            if progress and done % BATCH == 0:
                progress("approved users", done, total)
            yield server_id, email, email, stamp

    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            raw = cursor.cursor  # psycopg's own cursor: COPY is ~5x INSERT
            with raw.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
                for row in rows():
                    copy.write_row(row)
        else:
            batch: list[tuple[int, str, str, datetime | str | None]] = []
            sql = f"INSERT INTO {table} ({columns}) VALUES (%s, %s, %s, %s)"
            for row in rows():
                batch.append(row)
                if len(batch) == BATCH:
                    cursor.executemany(sql, batch)
                    batch.clear()
            if batch:
                cursor.executemany(sql, batch)
    if progress:
        progress("approved users", total, total)
    return users
