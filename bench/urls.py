"""The product's URLs plus the benchmark's floor and bare endpoints.

Only ``bench.settings`` points ``ROOT_URLCONF`` here; the product's own URLconf
(``pacsbin_integrations.urls``) knows nothing of the benchmark.
"""

from __future__ import annotations

from django.conf import settings
from django.urls import path

from bench.env import BARE_PATH, FLOOR_PATH
from bench.floor import bare, floor
from integrations.edge import decisions
from pacsbin_integrations.urls import handler500
from pacsbin_integrations.urls import urlpatterns as product_urlpatterns

__all__ = ["handler500", "urlpatterns"]  # the product's JSON 500 under /api/ too

# First: the product's /api/ ends in a catch-all JSON 404.
urlpatterns = [
    path(FLOOR_PATH.lstrip("/"), floor, name="bench-floor"),
    path(BARE_PATH.lstrip("/"), bare, name="bench-bare"),
    *product_urlpatterns,
]

# bench/gate.py's "decision cache off" gunicorn (see bench/settings.py): each
# token's signature is checked again (only the last one is kept).
if settings.CACHES["default"]["BACKEND"].endswith("DummyCache"):
    decisions.MAX_REMEMBERED = 0
