"""The access reviews' beat entry (settings.CELERY_BEAT_SCHEDULE); embedded,
``manage.py monitor`` calls ``flows.run`` itself."""

from __future__ import annotations

from celery import shared_task

from integrations.accessreviews import flows


@shared_task(name="access_reviews.run")
def run() -> int:
    started, overdue = flows.run()
    return len(started) + len(overdue)
