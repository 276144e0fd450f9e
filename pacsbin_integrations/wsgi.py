"""WSGI entry point: ``pacsbin_integrations.wsgi:application`` (gunicorn)."""

from __future__ import annotations

import os

from django.core.exceptions import ImproperlyConfigured
from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "pacsbin_integrations.settings")

application = get_wsgi_application()

# gunicorn runs no system checks: without collectstatic's manifest every HTML
# page would be a 500, so refuse to start and name the missing step instead.
from integrations.checks import COLLECTSTATIC_MISSING, static_manifest_missing  # noqa: E402

if static_manifest_missing():
    raise ImproperlyConfigured(COLLECTSTATIC_MISSING)
