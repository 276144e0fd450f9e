"""The benchmark's floor: the access question's whole stack without the question.

Same middleware, authentication, throttle and rendering as
``views.access_question`` (the same decorators), answering a constant JSON
document of the size of a typical answer. ``make bench`` compares the two
to see what the access question itself costs. Routed only when
``BENCH_FLOOR=1``: never in a real deployment (system check
integrations.W090 says so).
"""

from __future__ import annotations

import json
from functools import cache
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt

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
@access.authorize
@access.throttle
def floor(request: HttpRequest, caller: access.Caller) -> HttpResponse:
    return access.respond(
        access.render(floor_content(settings.BENCH_FLOOR_BYTES)),
        request.headers.get("If-None-Match", ""),
    )
