"""The gate's endpoints: the public keys, the edges' verify, edge keys.

``jwks`` and ``verify`` are plain Django views (no DRF request, no session,
no CSRF, no throttle): edges call verify on every DICOMweb request, so it
decides from memory and the shared cache (edge/decisions.py).
"""

from __future__ import annotations

import json

from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt

from integrations.edge import keys

# Short: a key published by a rotation is fetched again soon after.
JWKS_MAX_AGE = 60


@csrf_exempt
def jwks(request: HttpRequest) -> HttpResponse:
    if request.method not in ("GET", "HEAD"):
        return _method_not_allowed(request)
    response = HttpResponse(
        json.dumps(keys.jwks(), separators=(",", ":")),
        content_type="application/jwk-set+json",
    )
    response["Cache-Control"] = f"public, max-age={JWKS_MAX_AGE}"
    return response


def _method_not_allowed(request: HttpRequest) -> HttpResponse:
    response = HttpResponse(
        json.dumps({"detail": f'Method "{request.method}" not allowed.'}),
        status=405,
        content_type="application/json",
    )
    response["Allow"] = "GET, HEAD"
    return response
