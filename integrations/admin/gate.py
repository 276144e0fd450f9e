"""The gate in the server admin: the enforcement switch's companion (edge key
state, "Create edge key" shown once with the ready configurations and Copy
buttons) and the server's daily use through its edge."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseNotAllowed
from django.template.loader import render_to_string
from django.template.response import TemplateResponse
from django.urls import path, reverse

from integrations import audit, registry
from integrations.connectivity import proxyconfig
from integrations.edge import usage
from integrations.inputs import parse_id
from integrations.models import DicomWebServer

USAGE_DAYS = 30


class EdgeGateAdminMixin:
    """Mixed into DicomWebServerAdmin."""

    gate_fields = ["edge_gate"]

    def get_urls(self) -> list[Any]:
        site = self.admin_site  # type: ignore[attr-defined]
        return [
            path(
                "<path:object_id>/edge-key/",
                site.admin_view(self.edge_key_view),
                name="integrations_dicomwebserver_edge_key",
            ),
            path(
                "<path:object_id>/edge-usage/",
                site.admin_view(self.edge_usage_view),
                name="integrations_dicomwebserver_edge_usage",
            ),
            *super().get_urls(),  # type: ignore[misc]
        ]

    @admin.display(description="edge key and use")
    def edge_gate(self, server: DicomWebServer) -> str:
        if not server.pk:
            return "Save the server first."
        return render_to_string(
            "admin/integrations/gate/field.html",
            {
                "server": server,
                "key_url": reverse(
                    "admin:integrations_dicomwebserver_edge_key", args=[server.pk]
                ),
                "usage_url": reverse(
                    "admin:integrations_dicomwebserver_edge_usage", args=[server.pk]
                ),
            },
        )

    def _server(self, request: HttpRequest, object_id: str) -> DicomWebServer:
        if parse_id(unquote(object_id)) is None:
            raise Http404("No such server.")
        server = self.get_object(request, unquote(object_id))  # type: ignore[attr-defined]
        if server is None:
            raise Http404("No such server.")
        return server

    def edge_key_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """GET: what a new key does, and the button; POST: the key, shown once."""
        if request.method not in ("GET", "POST"):
            return HttpResponseNotAllowed(["GET", "POST"])
        server = self._server(request, object_id)
        if not self.has_change_permission(request, server):  # type: ignore[attr-defined]
            raise PermissionDenied
        context: dict[str, Any] = {
            **self.admin_site.each_context(request),  # type: ignore[attr-defined]
            "title": f"Edge key for {server.name}",
            "opts": server._meta,
            "server": server,
        }
        if request.method == "POST":
            try:
                with audit.acting_as(user=request.user), transaction.atomic():
                    edge_key = registry.replace_edge_key(server)
                    configs = proxyconfig.render_gated(server, edge_key)
            except proxyconfig.ConfigRefused as exc:
                context["refused"] = str(exc)
            else:
                context["edge_key"] = edge_key
                context["configs"] = sorted(configs.items())
        response = TemplateResponse(
            request, "admin/integrations/gate/edge_key.html", context
        )
        # The key is in this page once: no cache may keep it.
        response["Cache-Control"] = "no-store"
        return response

    def edge_usage_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        server = self._server(request, object_id)
        if not self.has_view_permission(request, server):  # type: ignore[attr-defined]
            raise PermissionDenied
        context = {
            **self.admin_site.each_context(request),  # type: ignore[attr-defined]
            "title": f"Use through the edge of {server.name}",
            "opts": server._meta,
            "server": server,
            "days": usage.daily(server, USAGE_DAYS),
            "usage_days": USAGE_DAYS,
        }
        return TemplateResponse(request, "admin/integrations/gate/usage.html", context)
