"""The connectivity part of REST API v1: checks and fix-it configurations."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import QuerySet
from django.http import HttpResponse
from rest_framework import generics, serializers, status
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from integrations.api import docs
from integrations.api.auth import ApiClient
from integrations.api.views import ServerChildMixin
from integrations.connectivity import proxyconfig, run_check
from integrations.models import CheckOutcome, ConnectivityCheck, DicomWebServer


class FindingSerializer(serializers.Serializer):
    code = serializers.CharField()
    message = serializers.CharField()


class ConnectivityCheckSerializer(serializers.Serializer):
    """Read-only: the contract shape, as ``ConnectivityCheck.to_dict()`` makes it."""

    id = serializers.IntegerField()
    created_at = serializers.DateTimeField()
    source = serializers.ChoiceField(choices=ConnectivityCheck.Source.choices)
    origin = serializers.CharField()
    outcome = serializers.ChoiceField(choices=CheckOutcome.choices)
    findings = FindingSerializer(many=True)

    def to_representation(self, instance: ConnectivityCheck) -> dict[str, Any]:
        return instance.to_dict()


class RunCheckSerializer(serializers.Serializer):
    origin = serializers.CharField(
        required=False,
        max_length=200,
        help_text="The origin to test, e.g. https://pacsbin.com (default: the "
        "first uploader origin).",
    )


@docs.checks
class ServerChecksView(ServerChildMixin, generics.ListAPIView):
    serializer_class = ConnectivityCheckSerializer
    permission_model = ConnectivityCheck

    def get_queryset(self) -> QuerySet[ConnectivityCheck]:
        return self.get_server().connectivity_checks.order_by("-created_at", "-pk")

    def post(self, request: Request, server_id: int) -> Response:
        server = self.get_server()
        payload = RunCheckSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        user = None if isinstance(request.user, ApiClient) else request.user
        try:
            check = run_check(server, payload.validated_data.get("origin"), user=user)
        except DjangoValidationError as exc:
            raise ValidationError({"origin": exc.messages}) from None
        return Response(check.to_dict(), status=status.HTTP_201_CREATED)


@docs.proxy_config
class ProxyConfigView(ServerChildMixin, APIView):
    permission_model = DicomWebServer

    def get(self, request: Request, server_id: int, kind: str) -> HttpResponse:
        server = self.get_server()
        try:
            text = proxyconfig.render(server, kind)
        except proxyconfig.UnknownKind as exc:
            raise NotFound(str(exc)) from None
        except proxyconfig.ConfigRefused as exc:
            raise docs.Conflict(str(exc)) from None
        return HttpResponse(text, content_type="text/plain; charset=utf-8")
