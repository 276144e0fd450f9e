from __future__ import annotations

# Celery's app is loaded with Django so that tasks sent from the web process
# (and `manage.py monitor`) use the configured broker.
from pacsbin_integrations.celery import app as celery_app

__all__ = ["celery_app"]
