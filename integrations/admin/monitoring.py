"""Monitoring in the admin: every server by state (failing first), and on each
server page its health, a 7-day timeline (inline SVG) and the capabilities
learnt from the archive."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.contrib import admin
from django.contrib.admin.utils import unquote
from django.db.models import F, QuerySet
from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from integrations.adminlookups import StrictNumberLookupsMixin
from integrations.connectivity import capabilities
from integrations.inputs import parse_id
from integrations.models import CheckOutcome, DicomWebServer, ServerHealth
from integrations.monitoring import health as server_health
from integrations.monitoring import listing, timeline

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


def health_badge(health: ServerHealth) -> str:
    """A server's badge by what is known (a first failure is "Confirming",
    never "never checked"; see monitoring/listing.py)."""
    key = listing.shown_state(health)
    if key == "unknown" and health.last_checked_at is None:
        title = "Not checked yet"
    else:
        title = listing.SHOWN_LABELS[key]
    return format_html(
        '<span class="pi-badge pi-state-{}" title="{}">{}</span>',
        listing.BADGE[key],
        title,
        listing.SHOWN_LABELS[key],
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
        note = STATE_NOTES.get(health.state, "")
        if health.last_checked_at is not None and health.state == "unknown":
            note = ""  # checked: the label says what is known
        return format_html(
            "{}{}<br>Last checked {}; last ok {}; outcome {}; "
            "TLS certificate: {}.<br>{}",
            listing.label(health, timezone.now()),
            link,
            _when(health.last_checked_at),
            _when(health.last_ok_at),
            CheckOutcome(health.outcome).label if health.outcome else "—",
            f"expires {_when(health.tls_expires_at)} ({days} days left)"
            if days is not None
            else "—",
            note,
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


class ShownStateFilter(admin.SimpleListFilter):
    """The list's totals as a filter: what is known of each server
    (``listing.SHOWN``), not only its stored state."""

    title = "what is known"
    parameter_name = "shown"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(key, listing.SHOWN_LABELS[key]) for key in listing.SHOWN]

    def queryset(
        self, request: HttpRequest, queryset: QuerySet[ServerHealth]
    ) -> QuerySet[ServerHealth]:
        value = self.value()
        found = listing.conditions()
        return queryset.filter(found[value]) if value in found else queryset


@admin.register(ServerHealth)
class ServerHealthAdmin(StrictNumberLookupsMixin, admin.ModelAdmin):
    """Every monitored server by state: failing first, then by how long."""

    list_display = [
        "server_link",
        "state_shown",
        "last_checked_shown",
        "last_ok_shown",
        "tls_days",
        "recent_checks",
    ]
    # The server's name links to its page; "settings" to this row's opt-ins.
    list_display_links = None
    list_filter = [ShownStateFilter, "state", "out_of_reach", "alert_contact"]
    change_list_template = "admin/integrations/serverhealth/change_list.html"

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
        return (
            super()
            .get_queryset(request)
            .annotate(shown_rank=listing.rank())
            .order_by("shown_rank", F("since").asc(nulls_last=True), "pk")
        )

    def get_changelist_instance(self, request: HttpRequest) -> Any:
        """The page's rows with their last checks: one query for the page."""
        changelist = super().get_changelist_instance(request)
        now = timezone.now()
        rows = list(changelist.result_list)  # evaluated once, kept for the page
        sparks = listing.recent_checks((row.pk for row in rows), now)
        for row in rows:
            row.listed_at = now
            row.sparks = sparks.get(row.pk, [])
        return changelist

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
        selected = request.GET.get(ShownStateFilter.parameter_name, "")
        counts = listing.totals(self.get_queryset(request))
        totals = [
            {
                "key": key,
                "label": listing.SHOWN_LABELS[key],
                "count": counts[key],
                "badge": listing.BADGE[key],
                "query": "" if key == selected else f"?shown={key}",
                "selected": key == selected,
            }
            for key in listing.SHOWN
        ]
        context = {
            "title": "Servers by monitoring state",
            "totals": totals,
            "total": sum(counts.values()),
        }
        extra_context = {**context, **(extra_context or {})}
        return super().changelist_view(request, extra_context)

    @admin.display(description="server", ordering="server__name")
    def server_link(self, health: ServerHealth) -> str:
        url = reverse("admin:integrations_dicomwebserver_change", args=[health.pk])
        settings_url = reverse(
            "admin:integrations_serverhealth_change", args=[health.pk]
        )
        return format_html(
            '<a href="{}">{}</a><br><span class="pi-muted">{}</span> · '
            '<a href="{}" class="pi-muted">settings</a>',
            url,
            health.server.name,
            health.server.institution.name,
            settings_url,
        )

    @staticmethod
    def _now(health: ServerHealth) -> datetime:
        return getattr(health, "listed_at", None) or timezone.now()

    @admin.display(description="state", ordering="shown_rank")
    def state_shown(self, health: ServerHealth) -> str:
        if not health.server_id:
            return ""
        return listing.label(health, self._now(health))

    @admin.display(description="last ok", ordering="last_ok_at")
    def last_ok_shown(self, health: ServerHealth) -> str:
        return listing.relative(health.last_ok_at, self._now(health))

    @admin.display(description="last checked", ordering="last_checked_at")
    def last_checked_shown(self, health: ServerHealth) -> str:
        return listing.relative(health.last_checked_at, self._now(health))

    @admin.display(description=f"last {listing.SPARK_CHECKS} checks")
    def recent_checks(self, health: ServerHealth) -> str:
        sparks = getattr(health, "sparks", None)
        if sparks is None:  # a page other than the list: its own query
            now = timezone.now()
            sparks = listing.recent_checks([health.pk], now).get(health.pk, [])
        return listing.sparkline(sparks, self._now(health))

    @admin.display(description="TLS days left", ordering="tls_expires_at")
    def tls_days(self, health: ServerHealth) -> str:
        days = tls_days_left(health)
        return "—" if days is None else str(days)
