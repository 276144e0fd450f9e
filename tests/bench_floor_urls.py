"""The project's URLs as `make bench` serves them (BENCH_FLOOR=1)."""

from __future__ import annotations

from django.urls import path

from integrations.api.floor import floor
from pacsbin_integrations.urls import urlpatterns as project_urlpatterns

urlpatterns = [path("api/v1/_floor", floor), *project_urlpatterns]
