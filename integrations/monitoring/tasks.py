"""Monitoring's Celery tasks. Beat sends ``monitoring.dispatch`` every
MONITOR_TICK_SECONDS; it claims the due servers and sends one
``monitoring.check_batch`` per MONITOR_BATCH_SIZE of them to the workers.
Without a broker (the embedded default) the same tasks run in the calling
process (``manage.py monitor``)."""

from __future__ import annotations

from celery import shared_task

from integrations.monitoring import rounds


@shared_task(name="monitoring.check_batch")
def check_batch(ids: list[int]) -> int:
    return rounds.check_batch([int(pk) for pk in ids]).checked


@shared_task(name="monitoring.dispatch")
def dispatch() -> int:
    return len(rounds.dispatch(send=check_batch.delay))


@shared_task(name="monitoring.prune")
def prune() -> int:
    return rounds.prune()
