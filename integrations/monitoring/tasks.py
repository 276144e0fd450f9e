"""Monitoring's Celery tasks. Beat sends ``monitoring.dispatch`` every
MONITOR_TICK_SECONDS; it claims the due servers and sends one
``monitoring.check_batch`` per MONITOR_BATCH_SIZE of them to the workers.
Without a broker (the embedded default) the same tasks run in the calling
process (``manage.py monitor``).

A batch is acknowledged when it is done (settings: acks late, rejected back
to the queue when its worker process dies, handed out again after
MONITOR_REDELIVER_SECONDS when the whole worker went away), so a lost batch
is redone, and the claim it carries keeps a late copy from checking servers
a later round took.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from celery import shared_task
from django.utils import timezone

from integrations.monitoring import rounds

logger = logging.getLogger(__name__)


@shared_task(name="monitoring.check_batch", bind=True)
def check_batch(self: Any, ids: list[int], claim: str | None = None) -> int:
    delivery = getattr(self.request, "delivery_info", None) or {}
    if delivery.get("redelivered"):
        logger.warning(
            "A batch of %d servers is redone: the worker that had it was lost.",
            len(ids),
        )
    claimed = datetime.fromisoformat(claim) if claim else None
    return rounds.check_batch([int(pk) for pk in ids], claimed).checked


def send_round(now: datetime | None = None) -> list[int]:
    """Claim every due server and send the batches, each with its claim;
    the claimed ids."""
    now = now or timezone.now()
    claim = rounds.claimed_until(now).isoformat()
    return rounds.dispatch(send=lambda ids: check_batch.delay(ids, claim), now=now)


@shared_task(name="monitoring.dispatch")
def dispatch() -> int:
    return len(send_round())


@shared_task(name="monitoring.prune")
def prune() -> int:
    return rounds.prune()


@shared_task(name="approvals.notify_expiring")
def notify_expiring() -> int:
    """The week-before notice of approvals that end (integrations.expiry)."""
    from integrations import expiry

    return expiry.notify_expiring()
