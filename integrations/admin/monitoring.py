"""Monitoring in the admin: every server by state (failing first), and on each
server page its health, a 7-day timeline (inline SVG) and the capabilities
learnt from the archive."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.contrib import admin
from django.contrib.admin.utils import unquote
from django.db.models import Case, IntegerField, QuerySet, Value, When
from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from integrations.adminlookups import StrictNumberLookupsMixin
from integrations.connectivity import capabilities
from integrations.inputs import parse_id
from integrations.models import CheckOutcome, DicomWebServer, ServerHealth
from integrations.monitoring import health as server_health
from integrations.monitoring import timeline

# The order of the list: what needs attention first.
STATE_ORDER = ["failing", "unknown", "ok", "unmonitored"]
STATE_NOTES = {
    "unmonitored": "The registry cannot reach this archive (inside a hospital "
    "network, or its address is private): it is not checked on a schedule and "
    "never alerted on. Use “Check from my browser” below.",
    "unknown": "Not checked yet: the next monitoring round will.",
}


def _when(value: datetime | None) -> str:
    return f"{value:%Y-%m-%d %H:%M} UTC" if value else "—"


def state_badge(state: str, label: str) -> str:
    """A short badge (the full label as its title)."""
    short = "OK" if state == "ok" else state.capitalize()
    return format_html(
        '<span class="pi-badge pi-state-{}" title="{}">{}</span>', state, label, short
    )


def tls_days_left(health: ServerHealth) -> int | None:
    if health.tls_expires_at is None:
        return None
    return (health.tls_expires_at - timezone.now()).days


def capabilities_table(health: ServerHealth) -> str:
    if not capabilities.clean(health.capabilities):
        return "Not learnt yet: a successful check learns what the archive does."
    rows = format_html_join(
        "",
        '<tr><th scope="row">{}</th><td>{}</td></tr>',
        capabilities.table(health.capabilities),
    )
    learnt_at = _when(health.capabilities_learnt_at)
    return format_html(
        '<table class="pi-capabilities"><tbody>{}</tbody></table><p>Learnt {}.</p>',
        rows,
        learnt_at,
    )


class MonitoringAdminMixin:
    """Mixed into DicomWebServerAdmin: the server page's "Monitoring" part."""

    monitoring_fields = ["health_summary", "health_timeline", "capability_table"]

    @admin.display(description="health")
    def health_summary(self, server: DicomWebServer) -> str:
        if not server.pk:
            return "Save the server first."
        health = server_health.of(server)
        days = tls_days_left(health)
        link = ""
        if health.pk and ServerHealth.objects.filter(pk=health.pk).exists():
            url = reverse("admin:integrations_serverhealth_change", args=[health.pk])
            link = format_html(' — <a href="{}">monitoring settings</a>', url)
        return format_html(
            "{} since {}{}<br>Last checked {}; last ok {}; outcome {}; "
            "TLS certificate: {}.<br>{}",
            state_badge(health.state, health.get_state_display()),
            _when(health.since),
            link,
            _when(health.last_checked_at),
            _when(health.last_ok_at),
            CheckOutcome(health.outcome).label if health.outcome else "—",
            f"expires {_when(health.tls_expires_at)} ({days} days left)"
            if days is not None
            else "—",
            STATE_NOTES.get(health.state, ""),
        )

    @admin.display(description="last 7 days")
    def health_timeline(self, server: DicomWebServer) -> str:
        if not server.pk:
            return ""
        return format_html(
            "{}<br><small>Green: ok; red: not ok; grey-blue: out of reach; "
            "light grey: no check.</small>",
            timeline.svg(server),
        )

    @admin.display(description="capabilities")
    def capability_table(self, server: DicomWebServer) -> str:
        if not server.pk:
            return ""
        return capabilities_table(server_health.of(server))


@admin.register(ServerHealth)
class ServerHealthAdmin(StrictNumberLookupsMixin, admin.ModelAdmin):
    """Every monitored server by state: failing first, then by how long."""

    list_display = [
        "server_link",
        "institution",
        "state_shown",
        "since_shown",
        "last_ok_shown",
        "last_checked_shown",
        "tls_days",
        "outcome",
    ]
    list_filter = ["state", "out_of_reach", "alert_contact"]

    class Media:
        css = {"all": ["integrations/admin.css"]}

    list_select_related = ["server", "server__institution"]
    search_fields = ["server__name", "server__institution__name"]
    readonly_fields = [
        "server_link",
        "state_shown",
        "since",
        "last_checked_at",
        "last_ok_at",
        "outcome",
        "tls_expires_at",
        "consecutive_failures",
        "flapping_since",
        "next_check_at",
    ]
    fieldsets = [
        (None, {"fields": [*readonly_fields]}),
        ("Set by staff", {"fields": ["out_of_reach", "alert_contact"]}),
    ]

    def get_queryset(self, request: HttpRequest) -> QuerySet[ServerHealth]:
        rank = Case(
            *(When(state=state, then=Value(i)) for i, state in enumerate(STATE_ORDER)),
            output_field=IntegerField(),
        )
        return (
            super()
            .get_queryset(request)
            .annotate(state_rank=rank)
            .order_by("state_rank", "since", "pk")
        )

    def get_object(
        self, request: HttpRequest, object_id: str, from_field: str | None = None
    ) -> ServerHealth | None:
        """Not found for an id that is no whole number in range (the key is the
        server's, through the one-to-one field)."""
        if from_field is None and parse_id(unquote(object_id)) is None:
            return None
        return super().get_object(request, object_id, from_field)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # rows are made by monitoring

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        title = {"title": "Servers by monitoring state"}
        extra_context = {**title, **(extra_context or {})}
        return super().changelist_view(request, extra_context)

    @admin.display(description="server", ordering="server__name")
    def server_link(self, health: ServerHealth) -> str:
        url = reverse("admin:integrations_dicomwebserver_change", args=[health.pk])
        return format_html('<a href="{}">{}</a>', url, health.server.name)

    @admin.display(description="institution", ordering="server__institution__name")
    def institution(self, health: ServerHealth) -> str:
        return health.server.institution.name

    @admin.display(description="state", ordering="state_rank")
    def state_shown(self, health: ServerHealth) -> str:
        return state_badge(health.state, health.get_state_display())

    @admin.display(description="since", ordering="since")
    def since_shown(self, health: ServerHealth) -> str:
        return _when(health.since)

    @admin.display(description="last ok", ordering="last_ok_at")
    def last_ok_shown(self, health: ServerHealth) -> str:
        return _when(health.last_ok_at)

    @admin.display(description="last checked", ordering="last_checked_at")
    def last_checked_shown(self, health: ServerHealth) -> str:
        return _when(health.last_checked_at)

    @admin.display(description="TLS days left", ordering="tls_expires_at")
    def tls_days(self, health: ServerHealth) -> str:
        days = tls_days_left(health)
        return "—" if days is None else str(days)
