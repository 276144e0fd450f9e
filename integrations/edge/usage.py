"""The gate's use per (server, email, day): granted and refused decisions.

Never a write per decision: each worker counts in memory and adds its counts
to the database with one upsert at most every FLUSH_SECONDS: on the next
decision after that, from a background timer when no decision comes (so the
last use of a quiet day is written too), and when the process exits. A
worker killed outright loses at most that many seconds of counts; a database
that is down keeps them in memory for the next try (decisions go on from the
cache meanwhile).
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from django.db import DatabaseError, connection
from django.db.models import Max, OuterRef, QuerySet, Subquery
from django.utils import timezone

from integrations.models import ApprovedUser, DicomWebServer, EdgeUsage

FLUSH_SECONDS = 30.0
# Slots kept while the database cannot take them, before new ones are dropped.
MAX_SLOTS = 200_000
log = logging.getLogger(__name__)


@dataclass
class _Count:
    granted: int = 0
    refused: int = 0
    last_used_at: datetime | None = None


_counts: dict[tuple[int, str, date], _Count] = {}
_lock = threading.Lock()
_last_flush = time.monotonic()
# The background flush (off in tests: a timer started by one test must not
# take another test's counts).
BACKGROUND_FLUSH = True
_timer: threading.Timer | None = None


def record(server_id: int, email: str, granted: bool) -> None:
    """Count one decision; flush when the last flush is FLUSH_SECONDS old."""
    now = timezone.now()
    with _lock:
        slot = (server_id, email, now.date())
        if slot not in _counts and len(_counts) >= MAX_SLOTS:
            return
        count = _counts.setdefault(slot, _Count())
        if granted:
            count.granted += 1
            count.last_used_at = now
        else:
            count.refused += 1
    if time.monotonic() - _last_flush >= FLUSH_SECONDS:
        flush()
    else:
        _schedule()


def _schedule() -> None:
    """A flush FLUSH_SECONDS from now, unless one is pending."""
    global _timer
    if not BACKGROUND_FLUSH or _timer is not None:
        return
    with _lock:
        if _timer is not None:
            return
        _timer = threading.Timer(FLUSH_SECONDS, _flush_in_background)
        _timer.daemon = True
        _timer.start()


def _flush_in_background() -> None:
    global _timer
    with _lock:
        _timer = None
    try:
        flush()
    except Exception:  # a thread's error must not vanish nor kill the worker
        log.exception("Edge usage: the background flush failed.")
    finally:
        connection.close()  # this thread's own connection


def flush() -> int:
    """Add the counts kept in memory to the database (one upsert); answers
    the rows written. On a database error the counts are kept for next time."""
    global _last_flush
    with _lock:
        taken = dict(_counts)
        _counts.clear()
        _last_flush = time.monotonic()
    if not taken:
        return 0
    try:
        return _write(taken)
    except DatabaseError:
        log.warning("Edge usage not written (database error); kept for later.")
        with _lock:
            for slot, count in taken.items():
                _merge(_counts.setdefault(slot, _Count()), count)
        return 0


def _merge(into: _Count, count: _Count) -> None:
    into.granted += count.granted
    into.refused += count.refused
    if count.last_used_at and (
        into.last_used_at is None or count.last_used_at > into.last_used_at
    ):
        into.last_used_at = count.last_used_at


def _write(taken: dict[tuple[int, str, date], _Count]) -> int:
    # Servers deleted since: their counts go with them.
    existing = set(
        DicomWebServer.objects.filter(
            pk__in={server_id for server_id, _, _ in taken}
        ).values_list("pk", flat=True)
    )
    ops = connection.ops
    rows = [
        (
            server_id,
            email,
            ops.adapt_datefield_value(day),
            count.granted,
            count.refused,
            ops.adapt_datetimefield_value(count.last_used_at),
        )
        for (server_id, email, day), count in taken.items()
        if server_id in existing
    ]
    if not rows:
        return 0
    table = connection.ops.quote_name(EdgeUsage._meta.db_table)
    # One statement for SQLite (>= 3.24) and PostgreSQL: counts add up, the
    # last use is the later one.
    sql = (
        f"INSERT INTO {table} (server_id, email, day, granted, refused, "
        "last_used_at) VALUES (%s, %s, %s, %s, %s, %s) "
        "ON CONFLICT (server_id, email, day) DO UPDATE SET "
        f"granted = {table}.granted + excluded.granted, "
        f"refused = {table}.refused + excluded.refused, "
        "last_used_at = CASE WHEN excluded.last_used_at IS NOT NULL AND "
        f"({table}.last_used_at IS NULL OR excluded.last_used_at > "
        f"{table}.last_used_at) THEN excluded.last_used_at "
        f"ELSE {table}.last_used_at END"
    )
    with connection.cursor() as cursor:
        cursor.executemany(sql, rows)
    return len(rows)


def forget() -> None:
    """Drop the counts kept in memory (tests)."""
    with _lock:
        _counts.clear()


def pending() -> dict[tuple[int, str, date], _Count]:
    with _lock:
        return dict(_counts)


def _flush_at_exit() -> None:
    try:
        flush()
    except Exception:  # the interpreter is going away: never a traceback
        log.warning("Edge usage not written at exit.")


atexit.register(_flush_at_exit)


# --- Reading it ---------------------------------------------------------------------


def with_last_used(users: QuerySet[ApprovedUser]) -> QuerySet[ApprovedUser]:
    """``users`` annotated with ``last_used_at``: their last granted request
    through the server's edge (None: never, or not recorded yet)."""
    last = (
        EdgeUsage.objects.filter(
            server_id=OuterRef("server_id"), email=OuterRef("email")
        )
        .values("server_id", "email")
        .annotate(last=Max("last_used_at"))
        .values("last")[:1]
    )
    return users.annotate(last_used_at=Subquery(last))


def daily(server: DicomWebServer, days: int = 30) -> list[dict[str, Any]]:
    """The server's use per day, newest first: granted, refused, users."""
    since = timezone.now().date().toordinal() - days + 1
    rows: dict[date, dict[str, Any]] = {}
    for row in EdgeUsage.objects.filter(
        server=server, day__gte=date.fromordinal(since)
    ).values("day", "email", "granted", "refused"):
        day = rows.setdefault(
            row["day"], {"day": row["day"], "granted": 0, "refused": 0, "users": 0}
        )
        day["granted"] += row["granted"]
        day["refused"] += row["refused"]
        day["users"] += 1 if row["granted"] and row["email"] else 0
    return sorted(rows.values(), key=lambda row: row["day"], reverse=True)
