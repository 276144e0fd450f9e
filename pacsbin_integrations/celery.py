"""The Celery application: monitoring's tasks on workers, scheduled by one beat.

Run with ``celery -A pacsbin_integrations worker`` and ``celery -A
pacsbin_integrations beat`` (README "Monitoring"). Its settings are Django's
``CELERY_*`` ones; without CELERY_BROKER_URL every task runs in the calling
process (the embedded default, driven by ``manage.py monitor``).
"""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "pacsbin_integrations.settings")

app = Celery("pacsbin_integrations")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.imports = [
    "integrations.monitoring.tasks",
    "integrations.accessreviews.tasks",
]
