"""The benchmark's two reference endpoints, routed only by ``bench.urls``.

- The **floor** (``/api/v1/_floor``): the access question's whole stack without
  the question. Same middleware, decorators (who may ask, how often) and
  rendering as the access view, answering a constant JSON document of
  the size of a typical answer (``BENCH_FLOOR_BYTES``, a setting of
  ``bench.settings`` only). Access/floor is what the question itself costs.
- The **bare** endpoint (``/api/v1/_bare``): Django and one trivial query, as a
  minimal app answers. A plain function view behind the same middleware that
  runs ``SELECT 1`` and answers a small JSON, like ``/api/v1/health`` without
  Django REST framework's dispatch. Access/bare is what an outside load test
  comparing the access question with a health check sees, at its strictest.

The product never routes either: the benchmark's gunicorn runs with
``DJANGO_SETTINGS_MODULE=bench.settings``.
"""

from __future__ import annotations

import json
from functools import cache
from typing import Any

from django.conf import settings
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET

from integrations.api import access

_SERVER = {
    "id": 1234,
    "name": "Server 001234",
    "institution": "Institution 01234",
    "qido_url": "https://pacs1234.site237.example.org/dicomweb",
    "wado_url": "https://pacs1234.site237.example.org/dicomweb",
}


@cache
def floor_content(size: int) -> dict[str, Any]:
    """An answer-shaped document whose JSON is about ``size`` bytes."""
    empty = {"email": "user123456@site237.example.org", "servers": []}
    per_server = len(_compact(_SERVER)) + 1  # and a comma
    servers = max(0, round((size - len(_compact(empty))) / per_server))
    return dict(empty, servers=[_SERVER] * servers)


def _compact(content: dict[str, Any]) -> str:
    return json.dumps(content, separators=(",", ":"), ensure_ascii=False)


@csrf_exempt
@require_GET
@access.authorize
@access.throttle
def floor(request: HttpRequest, caller: access.Caller) -> HttpResponse:
    return access.respond(
        # A setting of bench.settings, which the mypy plugin does not load.
        access.render(floor_content(settings.BENCH_FLOOR_BYTES)),  # type: ignore[misc]
        access.if_none_match(request),
    )


@require_GET
def bare(request: HttpRequest) -> JsonResponse:
    """Exactly one trivial SQL query, then a small JSON document."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        (one,) = cursor.fetchone()
    response = JsonResponse({"status": "ok", "one": one})
    response["Cache-Control"] = "no-store"
    return response
