"""The connectivity parts of the server admin: the "Run connectivity check"
action, the check history, the fix-it configurations and the browser check."""

from __future__ import annotations

from typing import Any

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed, JsonResponse
from django.template.loader import render_to_string
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join

from integrations.connectivity import proxyconfig, reports, run_checks
from integrations.models import ConnectivityCheck, DicomWebServer

# Each check waits for the archive; more than this many belongs in
# `manage.py check_servers`, not in one admin request.
MAX_SERVERS_PER_ACTION = 10


def outcome_badge(check: ConnectivityCheck) -> str:
    return format_html(
        '<span class="pi-badge pi-outcome-{}">{}</span>',
        "ok" if check.is_ok else "failed",
        check.get_outcome_display(),
    )


# The server page shows the newest checks; older ones stay in the database.
HISTORY_SHOWN = 20


def check_history(server: DicomWebServer) -> str:
    checks = list(
        server.connectivity_checks.select_related("created_by")[:HISTORY_SHOWN]
    )
    if not checks:
        return "No check yet: use the action “Run connectivity check”."
    rows = format_html_join(
        "",
        "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
        (
            (
                check.created_at.strftime("%Y-%m-%d %H:%M:%S UTC"),
                check.get_source_display(),
                check.shown_origin,
                outcome_badge(check),
                findings_list(check),
                check.created_by or "",
            )
            for check in checks
        ),
    )
    return format_html(
        '<table class="pi-check-history"><thead><tr><th>When</th><th>Source</th>'
        "<th>Origin</th><th>Outcome</th><th>Findings</th><th>By</th></tr></thead>"
        "<tbody>{}</tbody></table>",
        rows,
    )


def findings_list(check: ConnectivityCheck) -> str:
    return format_html(
        '<ul class="pi-findings">{}</ul>',
        format_html_join(
            "",
            "<li><code>{}</code> {}</li>",
            ((f["code"], f["message"]) for f in check.shown_findings),
        ),
    )


def _without_browser_check(fields: Any) -> list[Any]:
    return [field for field in fields if field != "browser_check"]


class ConnectivityAdminMixin:
    """Mixed into DicomWebServerAdmin."""

    connectivity_fields = ["check_history_table", "browser_check", "fixit_configs"]

    @property
    def media(self) -> forms.Media:
        return super().media + forms.Media(  # type: ignore[misc]
            js=["integrations/browser-check.js", "integrations/copy-config.js"],
            css={"all": ["integrations/admin.css"]},
        )

    def get_fieldsets(
        self, request: HttpRequest, obj: DicomWebServer | None = None
    ) -> Any:
        """Without the change permission there is no button to record a
        browser check (the endpoint refuses it too)."""
        fieldsets = super().get_fieldsets(request, obj)  # type: ignore[misc]
        if self.has_change_permission(request, obj):  # type: ignore[attr-defined]
            return fieldsets
        return [
            (name, {**options, "fields": _without_browser_check(options["fields"])})
            for name, options in fieldsets
        ]

    def get_urls(self) -> list[Any]:
        browser_check = path(
            "<path:object_id>/browser-check/",
            self.admin_site.admin_view(self.browser_check_view),  # type: ignore[attr-defined]
            name="integrations_dicomwebserver_browser_check",
        )
        return [browser_check, *super().get_urls()]  # type: ignore[misc]

    @admin.action(description="Run connectivity check", permissions=["change"])
    def run_connectivity_check(
        self, request: HttpRequest, queryset: QuerySet[DicomWebServer]
    ) -> None:
        servers = list(
            queryset.select_related("institution")[: MAX_SERVERS_PER_ACTION + 1]
        )
        if len(servers) > MAX_SERVERS_PER_ACTION:
            self.message_user(  # type: ignore[attr-defined]
                request,
                f"Select at most {MAX_SERVERS_PER_ACTION} servers, or run "
                "`python manage.py check_servers --all`.",
                messages.ERROR,
            )
            return
        for server in servers:
            for check in run_checks(server, user=request.user):
                level = messages.SUCCESS if check.is_ok else messages.WARNING
                first = next(
                    (f["message"] for f in check.shown_findings if not check.is_ok), ""
                )
                self.message_user(  # type: ignore[attr-defined]
                    request,
                    f"{server.name} from {check.origin}: "
                    f"{check.get_outcome_display()}. {first}".strip(),
                    level,
                )

    @admin.display(description="checks (newest first)")
    def check_history_table(self, server: DicomWebServer) -> str:
        return check_history(server) if server.pk else "Save the server first."

    @admin.display(description="check from my browser")
    def browser_check(self, server: DicomWebServer) -> str:
        if not server.pk:
            return "Save the server first."
        return render_to_string(
            "admin/integrations/connectivity/browser_check.html",
            {
                "server": server,
                "record_url": reverse(
                    "admin:integrations_dicomwebserver_browser_check", args=[server.pk]
                ),
                "uploader_origins": ", ".join(settings.UPLOADER_ORIGINS),
                "registry_origin": settings.REGISTRY_PUBLIC_ORIGIN,
            },
        )

    @admin.display(description="fix-it configurations")
    def fixit_configs(self, server: DicomWebServer) -> str:
        if not server.pk:
            return "Save the server first."
        if proxyconfig.behind_pacsbin_proxy(server):
            return render_to_string(
                "admin/integrations/connectivity/pacsbin_proxy.html",
                {
                    "proxy": proxyconfig.pacsbin_view(server),
                    "origins": proxyconfig.allowed_origins(),
                    "config_url": reverse(
                        "api:proxy-config", args=[server.pk, "pacsbin"]
                    ),
                },
            )
        configs, refused = proxyconfig.render_all(server)
        return render_to_string(
            "admin/integrations/connectivity/fixit_configs.html",
            {
                "configs": configs,
                "refused": refused,
                "origins": proxyconfig.allowed_origins(),
            },
        )

    def browser_check_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        return _record_browser_check(self, request, object_id)


def _record_browser_check(
    model_admin: Any, request: HttpRequest, object_id: str
) -> HttpResponse:
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    server = model_admin.get_object(request, object_id)
    if server is None:
        return JsonResponse({"detail": "No such server."}, status=404)
    if not model_admin.has_change_permission(request, server):
        # Recording a check writes to the server's history: a change.
        return JsonResponse(
            {"detail": "Recording a check needs the permission to change servers."},
            status=403,
        )
    return reports.record_from_request(request, server=server, user=request.user)
