"""Monitoring rounds: which servers are due, claiming them so that no two
dispatchers check one server twice, checking a batch, and writing the results
in bulk.

The schedule lives on ``ServerHealth.next_check_at`` (no schedule row per
server): a server is due when it is empty or past. A dispatcher claims a page
of due servers in one transaction: it reads which are still due and moves
their ``next_check_at`` one interval forward, two statements per page. On
PostgreSQL the read is ``SELECT … FOR UPDATE SKIP LOCKED``: rows another
dispatcher holds are skipped, and rows it has committed are no longer due; on
SQLite every transaction takes the write lock when it begins (settings), so
dispatchers take turns. Either way each due server is claimed once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, Q
from django.utils import timezone

from integrations.connectivity import capabilities, probe, runs
from integrations.models import (
    CheckOutcome,
    ConnectivityCheck,
    DicomWebServer,
    ServerHealth,
    storable_findings,
)
from integrations.monitoring import alerts, states
from integrations.registry import chunks

logger = logging.getLogger(__name__)

# Due servers read per query while dispatching (claimed in batches of
# MONITOR_BATCH_SIZE).
DUE_PAGE = 2000
# ServerHealth fields a round writes (never the ones staff edit).
WRITTEN = [
    "state",
    "since",
    "last_checked_at",
    "last_ok_at",
    "outcome",
    "tls_expires_at",
    "consecutive_failures",
    "last_check_seconds",
    "tls_alert_stage",
    "tls_later_since",
    "tls_later_expires_at",
    "recent_changes",
    "flapping_since",
]


def _due(now: datetime) -> Q:
    return Q(next_check_at__isnull=True) | Q(next_check_at__lte=now)


def enroll(now: datetime) -> None:
    """Every active server gets its health row (due at once); the ones staff
    marked as inside a hospital network are unmonitored."""
    missing = list(
        DicomWebServer.objects.filter(
            status=DicomWebServer.Status.ACTIVE, health__isnull=True
        ).values_list("pk", flat=True)
    )
    for batch in chunks(missing, 1000):
        ServerHealth.objects.bulk_create(
            [ServerHealth(server_id=pk) for pk in batch], ignore_conflicts=True
        )
    ServerHealth.objects.filter(out_of_reach=True).exclude(
        state=ServerHealth.State.UNMONITORED
    ).update(
        state=ServerHealth.State.UNMONITORED,
        since=now,
        consecutive_failures=0,
        next_check_at=None,
    )


def due_ids(now: datetime, limit: int = DUE_PAGE) -> list[int]:
    return list(
        ServerHealth.objects.filter(
            _due(now),
            server__status=DicomWebServer.Status.ACTIVE,
            out_of_reach=False,
        )
        .order_by(F("next_check_at").asc(nulls_first=True), "pk")
        .values_list("pk", flat=True)[:limit]
    )


def claimed_until(now: datetime) -> datetime:
    """Where a claim made at ``now`` moves ``next_check_at``: the next round.
    A batch lost with its worker is claimed again then, and the value is the
    batch's claim token (``check_batch``'s ``claimed_until``)."""
    return now + states.interval()


def claim(ids: Iterable[int], now: datetime) -> list[int]:
    """The servers of ``ids`` this caller claimed (see the module's doc)."""
    until = claimed_until(now)
    with transaction.atomic():
        due = ServerHealth.objects.filter(_due(now), pk__in=list(ids))
        if connection.features.has_select_for_update_skip_locked:
            due = due.select_for_update(skip_locked=True)
        claimed = sorted(due.values_list("pk", flat=True))
        ServerHealth.objects.filter(pk__in=claimed).update(next_check_at=until)
    return claimed


def dispatch(
    send: Callable[[list[int]], object], now: datetime | None = None
) -> list[int]:
    """Claim every due server and ``send`` them on in batches, then mail the
    alerts that checks recorded (one digest); the claimed ids.

    Embedded, the batches ran inside ``send``: this round's alerts go now.
    On Celery the workers record them later, and the next tick mails them,
    once no new one came for a tick (a round's batches finish close
    together), so a round is one digest rather than one per batch."""
    now = now or timezone.now()
    enroll(now)
    claimed_all: list[int] = []
    while True:
        ids = due_ids(now)
        claimed = claim(ids, now)
        for batch in chunks(claimed, settings.MONITOR_BATCH_SIZE):
            send(batch)
        claimed_all += claimed
        if len(ids) < DUE_PAGE:
            break
    settle = (
        timedelta(0)
        if settings.CELERY_TASK_ALWAYS_EAGER
        else timedelta(seconds=settings.MONITOR_TICK_SECONDS)
    )
    alerts.flush(settle=settle)
    return claimed_all


@dataclass
class Checked:
    result: probe.ProbeResult
    seconds: float
    finished_at: datetime
    # What an ok check learnt of the archive (None: not learnt this time).
    learnt: capabilities.Capabilities | None = None


@dataclass
class BatchReport:
    checked: int = 0
    changes: list[states.Change] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)


def _probe(health: ServerHealth, origin: str) -> Checked:
    """One check, in a pool thread (no database here). An ok check also
    learns the archive's capabilities, at most every RELEARN_SECONDS, as a
    check someone runs does (connectivity/capabilities.py)."""
    server = health.server
    started = time.monotonic()
    result = runs.probe_server(server, origin)
    seconds = time.monotonic() - started
    learnt = None
    if result.outcome == CheckOutcome.OK and capabilities.due(
        health.capabilities_learnt_at, timezone.now()
    ):
        try:
            learnt = capabilities.learn(server.qido_url, server.wado_url)
        except Exception:
            logger.exception("Learning the capabilities of server %s failed", server.pk)
    return Checked(result, seconds, timezone.now(), learnt)


def check_batch(ids: list[int], claim: datetime | None = None) -> BatchReport:
    """Check the claimed servers ``ids`` (MONITOR_CHECK_THREADS at once),
    record every finished check and its alerts in bulk (the dispatcher mails
    the alerts). On the task's soft
    time limit the finished ones are recorded and the rest wait for their
    next turn (their next_check_at was moved by the claim).

    ``claim``: the ``claimed_until`` the batch was sent with. A batch the
    broker hands out again (its worker was lost) checks only the servers
    still under that claim and not checked since it was made: one a later
    round claimed again, or whose check was recorded before the
    acknowledgement was lost, is not checked twice."""
    healths = {
        health.pk: health
        for health in ServerHealth.objects.select_related(
            "server", "server__institution"
        ).filter(pk__in=ids, server__status=DicomWebServer.Status.ACTIVE)
    }
    if claim is not None:
        claimed_at = claim - states.interval()
        stale = [
            pk
            for pk, h in healths.items()
            if h.next_check_at != claim
            or (h.last_checked_at is not None and h.last_checked_at >= claimed_at)
        ]
        if stale:
            logger.warning(
                "Skipping %d of %d servers of a batch claimed until %s: claimed "
                "or checked again since.",
                len(stale),
                len(healths),
                claim.isoformat(),
            )
            for pk in stale:
                del healths[pk]
    if not healths:
        return BatchReport()
    origin = settings.UPLOADER_ORIGINS[0]
    done: dict[int, Checked] = {}
    pool = ThreadPoolExecutor(
        max_workers=min(settings.MONITOR_CHECK_THREADS, len(healths)),
        thread_name_prefix="monitor-check",
    )
    futures: dict[Future[Checked], int] = {
        pool.submit(_probe, health, origin): pk for pk, health in healths.items()
    }
    try:
        for future in as_completed(futures):
            pk = futures[future]
            try:
                done[pk] = future.result()
            except Exception:
                logger.exception("Checking server %s failed", pk)
    except SoftTimeLimitExceeded:
        logger.warning(
            "Time limit: recording %d of %d checks; the rest are checked next round.",
            len(done),
            len(healths),
        )
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
    return record(healths, done, origin)


def record(
    healths: dict[int, ServerHealth], done: dict[int, Checked], origin: str
) -> BatchReport:
    report = BatchReport()
    rows = []
    changed = []
    sooner = []  # a failed check to confirm before the next interval
    learnt = []
    for pk, checked in done.items():
        health = healths[pk]
        claimed_until = health.next_check_at
        report.changes += states.apply_check(
            health, checked.result, checked.finished_at, checked.seconds
        )
        report.seconds.append(checked.seconds)
        changed.append(health)
        if health.next_check_at != claimed_until:
            sooner.append(health)
        if checked.learnt and capabilities.merge(
            health, checked.learnt, checked.finished_at
        ):
            learnt.append(health)
        rows.append(
            ConnectivityCheck(
                server_id=pk,
                source=ConnectivityCheck.Source.SERVER,
                origin=origin,
                outcome=checked.result.outcome,
                # The archive wrote part of these findings: escaped and capped.
                findings=storable_findings(
                    [finding.to_dict() for finding in checked.result.findings]
                ),
            )
        )
    with transaction.atomic():
        ConnectivityCheck.objects.bulk_create(rows)
        ServerHealth.objects.bulk_update(changed, WRITTEN)
        if sooner:
            ServerHealth.objects.bulk_update(sooner, ["next_check_at"])
        if learnt:
            ServerHealth.objects.bulk_update(
                learnt, ["capabilities", "capabilities_learnt_at"]
            )
        # In the same transaction as the states: a worker that dies before
        # the commit leaves neither, one that dies after leaves both.
        alerts.queue(report.changes)
    report.checked = len(rows)
    return report


def prune(now: datetime | None = None) -> int:
    """Delete monitoring's check rows older than MONITOR_KEEP_DAYS (server-side
    checks that no person ran), a slice at a time, and its alert rows; how
    many checks went."""
    cutoff = (now or timezone.now()) - timedelta(days=settings.MONITOR_KEEP_DAYS)
    alerts.prune(cutoff)
    old = ConnectivityCheck.objects.filter(
        created_at__lt=cutoff,
        source=ConnectivityCheck.Source.SERVER,
        created_by__isnull=True,
    )
    deleted = 0
    while True:
        pks = list(old.values_list("pk", flat=True)[:5000])
        if not pks:
            return deleted
        deleted += ConnectivityCheck.objects.filter(pk__in=pks).delete()[0]


def wait_for(ids: list[int], since: datetime, timeout: float) -> list[int]:
    """Wait until every server of ``ids`` was checked after ``since``; the
    ones still unchecked when ``timeout`` seconds have passed."""
    deadline = time.monotonic() + timeout
    waiting = list(ids)
    while waiting:
        checked: set[int] = set()
        for batch in chunks(waiting, 1000):
            checked.update(
                ServerHealth.objects.filter(
                    pk__in=batch, last_checked_at__gte=since
                ).values_list("pk", flat=True)
            )
        waiting = [pk for pk in waiting if pk not in checked]
        if not waiting or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    return waiting
