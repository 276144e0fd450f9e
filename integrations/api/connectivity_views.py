"""The connectivity part of REST API v1: checks and fix-it configurations."""

from __future__ import annotations

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import QuerySet
from django.http import HttpResponse
from rest_framework import generics, status
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from integrations.api import schema
from integrations.api.auth import ApiClient, request_user
from integrations.api.errors import Conflict
from integrations.api.serializers import (
    ConnectivityCheckSerializer,
    RunCheckSerializer,
    ServerHealthSerializer,
)
from integrations.api.views import ServerChildMixin
from integrations.connectivity import proxyconfig, run_check
from integrations.models import ConnectivityCheck, DicomWebServer


@schema.checks
class ServerChecksView(ServerChildMixin, generics.ListAPIView):
    serializer_class = ConnectivityCheckSerializer
    permission_model = ConnectivityCheck

    def get_queryset(self) -> QuerySet[ConnectivityCheck]:
        return self.get_server().connectivity_checks.order_by("-created_at", "-pk")

    def post(self, request: Request, server_id: int) -> Response:
        server = self.get_server()
        payload = RunCheckSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        caller = request_user(request)
        user = None if isinstance(caller, ApiClient) else caller
        try:
            check = run_check(
                server, payload.validated_data.get("origin"), user=user, relearn=True
            )
        except DjangoValidationError as exc:
            raise ValidationError({"origin": exc.messages}) from None
        return Response(check.to_dict(), status=status.HTTP_201_CREATED)


@schema.proxy_config
class ProxyConfigView(ServerChildMixin, APIView):
    permission_model = DicomWebServer

    def get(self, request: Request, server_id: int, kind: str) -> HttpResponse:
        server = self.get_server()
        try:
            text = proxyconfig.render(server, kind)
        except proxyconfig.UnknownKind as exc:
            raise NotFound(str(exc)) from None
        except proxyconfig.ConfigRefused as exc:
            raise Conflict(str(exc)) from None
        return HttpResponse(text, content_type="text/plain; charset=utf-8")


@schema.server_health
class ServerHealthView(ServerChildMixin, APIView):
    """What monitoring knows of the server (read: view permission on servers)."""

    permission_model = DicomWebServer

    def get(self, request: Request, server_id: int) -> Response:
        server = self.get_server()
        return Response(ServerHealthSerializer(server).data)
