"""The product's settings as ``make bench`` serves them: the same in every way
but the URLconf, which adds the floor and the bare endpoint (``bench.urls``).

Used only by the benchmark's processes (``DJANGO_SETTINGS_MODULE=bench.settings``,
set by ``bench.env.base_env``); a deployment never loads this module.
"""

from __future__ import annotations

from pacsbin_integrations.env import Env
from pacsbin_integrations.settings import *  # noqa: F403

ROOT_URLCONF = "bench.urls"
# The floor's answer size in bytes: the access question's mean answer, measured
# by bench.measure before it starts gunicorn.
BENCH_FLOOR_BYTES = Env().int("BENCH_FLOOR_BYTES", 400, minimum=2)

# bench/gate.py's "decision cache off" gunicorn: no shared cache (with
# bench/urls.py, no token remembered either), so every edge decision checks
# the signature and reads the server and the approval from the database.
if Env().str("BENCH_EDGE_DECISION_CACHE") == "off":
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.dummy.DummyCache"}}
