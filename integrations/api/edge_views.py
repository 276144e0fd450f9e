"""The gate's endpoints: the public keys, the edges' verify, edge keys.

``jwks`` and ``verify`` are plain Django views (no DRF request, no session,
no CSRF, no throttle): edges call verify on every DICOMweb request, so it
decides from memory and the shared cache (edge/decisions.py).
"""

from __future__ import annotations

import json

from django.conf import settings
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from integrations import registry
from integrations.api import schema
from integrations.api.errors import Conflict
from integrations.api.views import ServerChildMixin, acting_for
from integrations.connectivity import proxyconfig
from integrations.edge import decisions, keys, usage
from integrations.models import DicomWebServer

# Short: a key published by a rotation is fetched again soon after.
JWKS_MAX_AGE = 60


@schema.edge_jwks
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


@schema.edge_verify
@csrf_exempt  # edges send no cookie; any method (a check changes nothing)
def verify(request: HttpRequest) -> HttpResponse:
    """For edges (nginx auth_request, Caddy forward_auth, Traefik, Envoy):
    204 + X-Pacsbin-Email, 401 + WWW-Authenticate: Bearer, or 403."""
    decision = decisions.decide(
        request.META.get("HTTP_X_EDGE_KEY", ""),
        request.META.get("HTTP_AUTHORIZATION", ""),
    )
    if decision.server_id is not None:
        usage.record(decision.server_id, decision.email, decision.granted)
    if decision.granted:
        response = HttpResponse(status=204)
        response["X-Pacsbin-Email"] = decision.email
        # What the edge may keep: revocation reaches it within max-age; with
        # the registry unreachable it may use a decision that old plus the
        # grace (the generated nginx configuration relies on both).
        response["Cache-Control"] = (
            f"max-age={settings.EDGE_CACHE_SECONDS}, "
            f"stale-if-error={settings.EDGE_GRACE_SECONDS}"
        )
        return response
    response = HttpResponse(
        json.dumps({"detail": decision.reason}),
        status=decision.status,
        content_type="application/json",
    )
    if decision.status == 401:
        response["WWW-Authenticate"] = 'Bearer realm="pacsbin-edge"'
    # A refusal is never kept: the next request asks again.
    response["Cache-Control"] = "no-store"
    return response


@schema.edge_key
class EdgeKeyView(ServerChildMixin, APIView):
    """Create or replace a server's edge key (scope manage, or staff with the
    change permission on servers); the old key stops working at once."""

    permission_model = DicomWebServer
    staff_permission = "change"

    def post(self, request: Request, server_id: int) -> Response:
        server = self.get_server()
        try:
            # One transaction: no configuration, no new key.
            with acting_for(request), transaction.atomic():
                edge_key = registry.replace_edge_key(server)
                configs = proxyconfig.render_gated(server, edge_key)
        except proxyconfig.ConfigRefused as exc:
            raise Conflict(str(exc)) from None
        return Response(
            {"edge_key": edge_key, "configs": configs},
            status=status.HTTP_201_CREATED,
            headers={"Cache-Control": "no-store"},
        )


def _method_not_allowed(request: HttpRequest) -> HttpResponse:
    response = HttpResponse(
        json.dumps({"detail": f'Method "{request.method}" not allowed.'}),
        status=405,
        content_type="application/json",
    )
    response["Allow"] = "GET, HEAD"
    return response
