"""REST API v1 views: thin; the rules live in the models, registry and access."""

from __future__ import annotations

import json
from contextlib import AbstractContextManager
from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import DatabaseError, IntegrityError, connection, transaction
from django.db.models import ProtectedError, QuerySet
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404
from django.views.decorators.csrf import csrf_exempt
from rest_framework import generics, status, viewsets
from rest_framework.exceptions import NotFound, PermissionDenied, ValidationError
from rest_framework.permissions import AllowAny
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.serializers import BaseSerializer, as_serializer_error
from rest_framework.views import APIView

from integrations import audit, cache, registry
from integrations.api import access, schema
from integrations.api.auth import ApiClient
from integrations.api.errors import RETRY_AFTER_SECONDS, Conflict
from integrations.api.serializers import (
    ApprovedUserSerializer,
    BulkAddResultSerializer,
    BulkEmailsSerializer,
    DicomWebServerSerializer,
    InstitutionSerializer,
)
from integrations.edge import usage
from integrations.inputs import escaped, parse_id
from integrations.models import (
    ApprovedUser,
    DicomWebServer,
    Institution,
    integrity_error_as_validation,
)
from integrations.validators import normalize_email


def acting_for(request: Request) -> AbstractContextManager[audit.Actor]:
    """The audit actor of a change made through the API: the user, or the key
    together with the staffer who created it (answerable for what it does)."""
    if isinstance(request.user, ApiClient):
        key = request.user.key
        return audit.acting_as(user=key.created_by, label=key.audit_label)
    return audit.acting_as(user=request.user)


def _query_text(request: Request, name: str) -> str:
    """A free-text query parameter; NUL is refused (PostgreSQL cannot take it)."""
    value = request.query_params.get(name, "").strip()
    if "\x00" in value:
        raise ValidationError({name: ["The value contains a NUL character."]})
    return value


# --- The access question --------------------------------------------------
# The uploader's hot path: a plain Django view (no DRF request machinery);
# the rules live in ``access`` and ``DicomWebServer.objects.approved_for``.
# CORS: django-cors-headers answers for UPLOADER_ORIGINS on this path only
# (settings.CORS_URLS_REGEX): preflights, and headers on every answer, 401
# and 429 included.


@schema.access  # the OpenAPI operation (drf-spectacular)
@csrf_exempt  # a read with credentials in a header, never a cookie-only form
@access.authorize  # Api-Key, Bearer user token or staff session; else 401/403
@access.read_only  # GET and HEAD; else 405, not counted by the throttle
@access.throttle  # ACCESS_THROTTLE_RATE per key or Bearer email; else 429
def access_question(request: HttpRequest, caller: access.Caller) -> HttpResponse:
    email = access.email_asked(request, caller)
    content = access.answer(email, access.format_asked(request))
    return access.respond(access.render(content), access.if_none_match(request))


@csrf_exempt
def access_question_with_slash(request: HttpRequest) -> HttpResponse:
    """``/api/v1/access/``, as many clients write it: the same answer (not a
    redirect, which would drop the Authorization header in some clients).
    Left out of the OpenAPI document, which names the one path."""
    return access_question(request)


@csrf_exempt  # changes nothing; a CSRF 403 page would hide the JSON 404
def api_not_found(request: HttpRequest, *args: Any, **kwargs: Any) -> JsonResponse:
    return JsonResponse({"detail": "Not found."}, status=status.HTTP_404_NOT_FOUND)


# --- Health -----------------------------------------------------------------


@schema.health
class HealthView(APIView):
    authentication_classes: list[Any] = []
    permission_classes = [AllowAny]
    renderer_classes = [JSONRenderer]

    def get(self, request: Request) -> Response:
        headers = {"Cache-Control": "no-store"}
        # The cache is reported, never failed on: without it the registry
        # still answers (throttles count per process meanwhile).
        cache_state = cache.state()
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1")
                cursor.fetchone()
        except DatabaseError:
            return Response(
                {"status": "unavailable", "cache": cache_state},
                status=status.HTTP_503_SERVICE_UNAVAILABLE,
                headers={**headers, "Retry-After": str(RETRY_AFTER_SECONDS)},
            )
        return Response({"status": "ok", "cache": cache_state}, headers=headers)


# --- Management ---------------------------------------------------------------


class AuditedSaveMixin:
    """Saves in a savepoint, as the request's actor, and turns a duplicate
    that slipped past validation (a concurrent insert) into a 400."""

    def _save(self, serializer: BaseSerializer) -> None:
        request: Request = self.request  # type: ignore[attr-defined]
        try:
            with acting_for(request), transaction.atomic():
                serializer.save()
        except IntegrityError as exc:
            current = {"name": serializer.instance.name} if serializer.instance else {}
            values = {**current, **serializer.validated_data}
            duplicate = integrity_error_as_validation(exc, values)
            if duplicate is None:
                raise Conflict(
                    "The change conflicts with a concurrent one; try again."
                ) from None
            raise ValidationError(as_serializer_error(duplicate)) from None

    def perform_create(self, serializer: BaseSerializer) -> None:
        self._save(serializer)

    def perform_update(self, serializer: BaseSerializer) -> None:
        self._save(serializer)


@schema.institutions
class InstitutionViewSet(AuditedSaveMixin, viewsets.ModelViewSet):
    # ASCII digits only: int() reads "١" as 1. Longer than any 64-bit id is
    # no match, so the JSON 404 of api_not_found.
    lookup_value_regex = "[0-9]{1,19}"
    serializer_class = InstitutionSerializer
    permission_model = Institution
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]

    def get_queryset(self) -> QuerySet[Institution]:
        institutions = Institution.objects.order_by("name", "pk")
        search = _query_text(self.request, "search")
        if search:
            institutions = institutions.filter(name__icontains=search)
        return institutions

    def perform_destroy(self, instance: Institution) -> None:
        try:
            with acting_for(self.request), transaction.atomic():
                instance.delete()
        except ProtectedError as exc:
            count = len(exc.protected_objects)
            raise Conflict(
                f"“{instance.name}” still has {count} DICOMweb server(s); "
                "delete them or move them to another institution first."
            ) from None


@schema.servers
class DicomWebServerViewSet(AuditedSaveMixin, viewsets.ModelViewSet):
    # ASCII digits only: int() reads "١" as 1. Longer than any 64-bit id is
    # no match, so the JSON 404 of api_not_found.
    lookup_value_regex = "[0-9]{1,19}"
    serializer_class = DicomWebServerSerializer
    permission_model = DicomWebServer
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]

    def get_queryset(self) -> QuerySet[DicomWebServer]:
        servers = DicomWebServer.objects.order_by("pk")
        if self.action != "list":
            return servers
        params = self.request.query_params
        # Every bad filter is reported at once, not the first alone.
        errors: dict[str, list[str]] = {}
        if "institution" in params:
            raw = params["institution"]
            institution_id = parse_id(raw)
            if institution_id is None:
                errors["institution"] = [
                    f"“{escaped(raw, 50)}” is not an institution id "
                    "(a whole number of at most 19 digits)."
                ]
            else:
                servers = servers.filter(institution_id=institution_id)
        if "status" in params:
            wanted = params["status"]
            if wanted not in DicomWebServer.Status.values:
                choices = ", ".join(DicomWebServer.Status.values)
                errors["status"] = [
                    f"“{escaped(wanted, 50)}” is not a status: use one of {choices}."
                ]
            else:
                servers = servers.filter(status=wanted)
        if errors:
            raise ValidationError(errors)
        return servers

    def perform_destroy(self, instance: DicomWebServer) -> None:
        with acting_for(self.request), transaction.atomic():
            instance.delete()


class ServerChildMixin:
    """Views under /servers/{server_id}/: the server, or a 404."""

    def get_server(self) -> DicomWebServer:
        kwargs = self.kwargs  # type: ignore[attr-defined]
        return get_object_or_404(DicomWebServer, pk=kwargs["server_id"])


@schema.approved_users
class ApprovedUserListView(ServerChildMixin, generics.ListAPIView):
    serializer_class = ApprovedUserSerializer
    permission_model = ApprovedUser

    def get_queryset(self) -> QuerySet[ApprovedUser]:
        users = usage.with_last_used(
            ApprovedUser.objects.filter(server=self.get_server())
        ).order_by("email_key", "pk")
        search = _query_text(self.request, "search")
        if search:
            users = users.filter(email_key__contains=search.lower())
        return users

    def post(self, request: Request, server_id: int) -> Response:
        server = self.get_server()
        payload = BulkEmailsSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        given = payload.validated_data["emails"]
        try:
            emails = registry.normalise_all(given)
        except registry.BulkEmailError as exc:
            raise ValidationError(
                {"emails": [_item_error(given, *error) for error in exc.errors]}
            ) from None
        ends = payload.validated_data["expiry"]
        if ends is not None and not _may_renew(request):
            raise PermissionDenied(
                "Giving approvals an end (days or expires_at) renews those "
                "already approved: your account lacks the permission to "
                "change approved users."
            )
        with acting_for(request):
            result = registry.add_normalised_users(server, emails, ends)
        answer = BulkAddResultSerializer(
            {"added": result.added, "existing": result.existing}
        )
        return Response(answer.data)


def _may_renew(request: Request) -> bool:
    """A key of scope manage may; a staff session needs change on approvals."""
    if isinstance(request.user, ApiClient):
        return True
    return request.user.has_perm("integrations.change_approveduser")


def _item_error(given: list[Any], position: int, value: str, message: str) -> str:
    """``Item 3: <message>``, naming the value when the message does not."""
    raw = given[position - 1]
    text = raw.strip() if isinstance(raw, str) else ""
    shown = text or json.dumps(raw, ensure_ascii=False)
    if text and text in message:
        return f"Item {position}: {message}"
    return f"Item {position} ({shown}): {message}"


@schema.approved_user
class ApprovedUserDetailView(ServerChildMixin, APIView):
    permission_model = ApprovedUser

    def delete(self, request: Request, server_id: int, email: str) -> Response:
        server = self.get_server()
        try:
            normalised = normalize_email(email)
        except DjangoValidationError as exc:
            raise ValidationError({"email": exc.messages}) from None
        with acting_for(request):
            removed = registry.remove_approved_users(server, [normalised])
        if not removed:
            raise NotFound(f"“{normalised}” is not approved for this server.")
        return Response(status=status.HTTP_204_NO_CONTENT)
