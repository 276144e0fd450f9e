"""The registry's admin: institutions, DICOMweb servers, approved users and
API keys, the tool onboarding staff use all day."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.options import IncorrectLookupParameters
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.db import IntegrityError, connection
from django.db.models import Count, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path
from django.utils import timezone
from django.utils.functional import cached_property
from django.utils.html import format_html
from simple_history.admin import SimpleHistoryAdmin

from integrations import expiry, registry
from integrations.admin.connectivity import ConnectivityAdminMixin
from integrations.admin.gate import EdgeGateAdminMixin
from integrations.admin.monitoring import (
    MonitoringAdminMixin,
    health_badge,
    state_badge,
)
from integrations.admin.reviews import AccessReviewActionMixin, ServerReviewFilter
from integrations.admin.serverpage import (
    GLANCE_FIELDSET,
    ServerPageAdminMixin,
    _without,
    may_use,
)
from integrations.adminlookups import StrictNumberLookupsMixin
from integrations.edge import usage
from integrations.forms import (
    AccessLookupForm,
    ApiKeyAdminForm,
    ApprovedUserAdminForm,
    DicomWebServerAdminForm,
    DicomWebServerInlineForm,
)
from integrations.inputs import escaped, parse_id
from integrations.models import (
    ApiKey,
    ApprovedUser,
    DicomWebServer,
    Institution,
    integrity_error_as_validation,
)
from integrations.validators import email_key


class CappedCountPaginator(Paginator):
    """Counts at most ``cap`` rows, so a page of a million-row table never
    counts the whole table; the page footer then says "more than"."""

    cap = 10_000

    @cached_property
    def count(self) -> int:
        rows = self.object_list[: self.cap + 1]
        # The admin pages querysets; a list counts by its length.
        return rows.count() if isinstance(rows, QuerySet) else len(rows)

    @property
    def capped(self) -> bool:
        return self.count > self.cap


class SelectedServerFilter(admin.SimpleListFilter):
    """Filter by one server without listing every server in the sidebar (there
    may be tens of thousands); the server page links here."""

    title = "server"
    parameter_name = "server__id__exact"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        value = self.value()
        server_id = parse_id(value)
        if value is None or server_id is None:
            return []
        server = DicomWebServer.objects.filter(pk=server_id).first()
        return [(value, str(server))] if server else []

    def queryset(
        self, request: HttpRequest, queryset: QuerySet[ApprovedUser]
    ) -> QuerySet[ApprovedUser]:
        value = self.value()
        if not value:
            return queryset
        server_id = parse_id(value)
        if server_id is None:
            raise IncorrectLookupParameters(f"{escaped(value, 50)} is not a server id.")
        return queryset.filter(server_id=server_id)


class ExpiryFilter(admin.SimpleListFilter):
    """Approvals by their end: the "ending soon" list the index links to."""

    title = "access ends"
    parameter_name = "expiry"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [
            ("soon", f"Within {expiry.NOTICE_DAYS} days"),
            ("dated", "On a date (not ended yet)"),
            ("ended", "Ended"),
            ("never", "Never"),
        ]

    def queryset(
        self, request: HttpRequest, queryset: QuerySet[ApprovedUser]
    ) -> QuerySet[ApprovedUser]:
        now = timezone.now()
        value = self.value()
        if value == "soon":
            return queryset.filter(
                expires_at__gt=now,
                expires_at__lte=now + timedelta(days=expiry.NOTICE_DAYS),
            )
        if value == "dated":
            return queryset.filter(expires_at__gt=now)
        if value == "ended":
            return queryset.filter(expires_at__lte=now)
        if value == "never":
            return queryset.filter(expires_at__isnull=True)
        if value:
            raise IncorrectLookupParameters(
                f"{escaped(value, 50)} is not an expiry filter."
            )
        return queryset


def email_search(queryset: QuerySet[ApprovedUser], term: str) -> QuerySet[ApprovedUser]:
    """A whole address by its key, anything else as the start of one: both are
    index range scans, never a scan of every row as a substring search is."""
    try:
        return queryset.filter(email_key=email_key(term))
    except ValidationError:
        pass
    prefix = term.strip().lower()  # keys are lowered, never casefolded
    if connection.vendor == "postgresql":
        # LIKE 'x%' uses the varchar_pattern_ops index (0006_bench_indexes)
        # whatever the database collation.
        return queryset.filter(email_key__startswith=prefix)
    # SQLite compares text by code point, so a range is exactly the prefix.
    return queryset.filter(email_key__gte=prefix, email_key__lt=prefix + "\U0010ffff")


class AuditedAdmin(StrictNumberLookupsMixin, SimpleHistoryAdmin):
    def history_view(
        self,
        request: HttpRequest,
        object_id: str,
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        # simple_history looks the id up as given: "²" would be a 500.
        if parse_id(unquote(object_id)) is None:
            return self._get_obj_does_not_exist_redirect(request, self.opts, object_id)
        return super().history_view(request, object_id, extra_context)

    def changeform_view(
        self,
        request: HttpRequest,
        object_id: str | None = None,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        try:
            return super().changeform_view(request, object_id, form_url, extra_context)
        except IntegrityError as exc:
            # A duplicate written by someone else between the form's check and
            # the insert: the database refused it; say so instead of a 500.
            error = integrity_error_as_validation(exc, request.POST)
            if error is None:
                raise
            for message in error.messages:
                self.message_user(request, message, messages.ERROR)
            return HttpResponseRedirect(request.get_full_path())


class DicomWebServerInline(admin.TabularInline):
    model = DicomWebServer
    form = DicomWebServerInlineForm
    fields = ["name", "status", "cors_mode", "qido_url", "wado_url"]
    extra = 0
    show_change_link = True


@admin.register(Institution)
class InstitutionAdmin(AuditedAdmin):
    list_display = ["name", "contact_name", "contact_email", "server_count"]
    search_fields = ["name", "contact_name", "contact_email"]
    inlines = [DicomWebServerInline]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Institution]:
        return super().get_queryset(request).annotate(server_count=Count("servers"))

    @admin.display(description="servers", ordering="server_count")
    def server_count(self, institution: Institution) -> int:
        return institution.server_count  # type: ignore[attr-defined]


# Needed to give pasted emails an end (it renews approvals already there).
RENEW_PERMISSION = "integrations.change_approveduser"

PROXY_FIELDSET = "Pacsbin's proxy (only when CORS is met by Pacsbin's proxy)"


# The server list's short words for how CORS is met (the long ones are the
# choices' labels, on the server's page and in the filter).
CORS_SHORT: dict[str, str] = {
    DicomWebServer.CorsMode.DIRECT: "Archive",
    DicomWebServer.CorsMode.REVERSE_PROXY: "Reverse proxy",
    DicomWebServer.CorsMode.DIMSE_PROXY: "Pacsbin's proxy",
}


@admin.register(DicomWebServer)
class DicomWebServerAdmin(
    AccessReviewActionMixin,
    ServerPageAdminMixin,
    EdgeGateAdminMixin,
    MonitoringAdminMixin,
    ConnectivityAdminMixin,
    AuditedAdmin,
):
    form = DicomWebServerAdminForm
    # What a staffer decides with: who, whether it is on and healthy, how CORS
    # is met (short), and where it lives; the rest is on the server's page.
    list_display = [
        "name",
        "institution",
        "status_badge",
        "health_badge",
        "cors_short",
        "qido_url",
    ]
    list_filter = [
        "status",
        "cors_mode",
        "needs_credentials",
        ServerReviewFilter,
        "institution",
    ]
    list_select_related = ["institution", "health"]
    search_fields = ["institution__name", "name", "qido_url", "wado_url"]
    search_help_text = "Institution, server name, URL, or an approved email."
    autocomplete_fields = ["institution"]
    readonly_fields = [
        *ServerPageAdminMixin.glance_fields,
        "created_at",
        "updated_at",
        *ConnectivityAdminMixin.connectivity_fields,
        *MonitoringAdminMixin.monitoring_fields,
        *EdgeGateAdminMixin.gate_fields,
    ]
    actions = [
        "activate",
        "suspend",
        "run_connectivity_check",
        "start_access_review",
    ]
    # The first screen answers "who may use it, and is it healthy?"; the
    # long parts (configurations, checks, capabilities) follow it.
    change_form_template = "admin/integrations/dicomwebserver/change_form.html"
    fieldsets = [
        (None, {"fields": ["institution", "name", "status"]}),
        (
            GLANCE_FIELDSET,
            {
                "fields": [
                    "health_brief",
                    # With the search, or (no view on approved users) the count.
                    "approved_users_link",
                    "approved_users_count",
                    # How long, then what: the box's own Save comes last.
                    "access_lasts",
                    "add_emails",
                    "gate_brief",
                    "email_check",
                ],
                "classes": ["pi-glance"],
            },
        ),
        ("Endpoints", {"fields": ["qido_url", "wado_url"]}),
        ("CORS", {"fields": ["cors_mode", "needs_credentials"]}),
        (
            PROXY_FIELDSET,
            {
                # One per line: the admin opens a collapsed fieldset when
                # one of its fields has an error, matching names one by one.
                "fields": [
                    "proxy_mode",
                    "archive_ae_title",
                    "archive_host",
                    "archive_port",
                    "proxy_ae_title",
                    "proxy_dimse_port",
                    "forward_qido_url",
                    "forward_wado_url",
                ],
                "description": "For the dimse mode, the QIDO and WADO URLs above "
                "are the proxy's public origin (no path): its routes are at the "
                "root. The dicomweb mode forwards to an archive whose DICOMweb "
                "root is at / (the proxy drops any path).",
            },
        ),
        (
            "The gate",
            {
                "fields": ["edge_enforced", *EdgeGateAdminMixin.gate_fields],
                "description": "With enforcement on, the archive's reverse proxy "
                "asks the registry about every DICOMweb request and refuses "
                "anyone not approved here (README, The gate).",
            },
        ),
        ("Connectivity", {"fields": ConnectivityAdminMixin.connectivity_fields}),
        ("Monitoring", {"fields": MonitoringAdminMixin.monitoring_fields}),
        (None, {"fields": ["notes", "created_at", "updated_at"]}),
    ]

    def get_fieldsets(
        self, request: HttpRequest, obj: DicomWebServer | None = None
    ) -> Any:
        """The proxy's inputs folded away unless the server is behind it;
        "Access lasts" only for staff who may change approvals (it renews
        those already approved)."""
        fieldsets = super().get_fieldsets(request, obj)
        if not request.user.has_perm(RENEW_PERMISSION):
            fieldsets = [
                (
                    name,
                    {
                        **options,
                        "fields": _without(options["fields"], ("access_lasts",)),
                    },
                )
                for name, options in fieldsets
            ]
        if obj is not None and obj.cors_mode == DicomWebServer.CorsMode.DIMSE_PROXY:
            return fieldsets
        return [
            (name, {**options, "classes": ["collapse"]})
            if name == PROXY_FIELDSET
            else (name, options)
            for name, options in fieldsets
        ]

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[DicomWebServer], search_term: str
    ) -> tuple[QuerySet[DicomWebServer], bool]:
        found, may_have_duplicates = super().get_search_results(
            request, queryset, search_term
        )
        term = search_term.strip()
        if "@" in term:
            # An email finds the servers it is approved for (an index lookup,
            # not a join of every approval into the text search).
            try:
                key = email_key(term)
            except ValidationError:
                return found, may_have_duplicates
            approved = ApprovedUser.objects.filter(email_key=key).values("server_id")
            found = found | queryset.filter(pk__in=approved)
        return found, may_have_duplicates

    @admin.display(description="status", ordering="status")
    def status_badge(self, server: DicomWebServer) -> str:
        return format_html(
            '<span class="pi-badge pi-status-{}">{}</span>',
            server.status,
            server.get_status_display(),
        )

    @admin.display(description="health", ordering="health__state")
    def health_badge(self, server: DicomWebServer) -> str:
        health = getattr(server, "health", None)
        if health is None:
            return state_badge("unknown", "Not checked yet")
        return health_badge(health)

    @admin.display(description="CORS", ordering="cors_mode")
    def cors_short(self, server: DicomWebServer) -> str:
        return CORS_SHORT.get(server.cors_mode, server.cors_mode)

    def save_related(
        self, request: HttpRequest, form: Any, formsets: Any, change: bool
    ) -> None:
        super().save_related(request, form, formsets, change)
        emails = form.cleaned_data.get("add_emails") or []
        if not emails:
            return
        # Without the change permission on approvals, pasting only adds (no
        # end, existing ends untouched), whatever the post says.
        renews = request.user.has_perm(RENEW_PERMISSION)
        expiry = form.access_expiry() if renews else None
        result = registry.add_approved_users(form.instance, emails, expiry)
        at = expiry.at if expiry else None
        until = f"until {at:%Y-%m-%d %H:%M} UTC" if at else "with no end"
        if result.added:
            self.message_user(
                request,
                f"Approved {len(result.added)} new email(s)"
                + (f", {until}." if at else "."),
                messages.SUCCESS,
            )
        if result.end_changed:
            self.message_user(
                request,
                f"Access of {len(result.end_changed)} already approved email(s) "
                f"now lasts {until}: "
                + ", ".join(result.end_changed[:20])
                + (" …" if len(result.end_changed) > 20 else ""),
                messages.SUCCESS,
            )
        if result.existing:
            self.message_user(
                request,
                f"Already approved ({len(result.existing)}): "
                + ", ".join(result.existing[:20])
                + (" …" if len(result.existing) > 20 else ""),
                messages.INFO,
            )

    def _change_status(
        self, request: HttpRequest, queryset: QuerySet[DicomWebServer], status: str
    ) -> None:
        changed = registry.set_status(queryset, status)
        self.message_user(
            request, f"{changed} server(s) now {status}.", messages.SUCCESS
        )

    @admin.action(description="Activate: give to the uploader", permissions=["change"])
    def activate(
        self, request: HttpRequest, queryset: QuerySet[DicomWebServer]
    ) -> None:
        self._change_status(request, queryset, DicomWebServer.Status.ACTIVE)

    @admin.action(
        description="Suspend: stop giving to the uploader", permissions=["change"]
    )
    def suspend(self, request: HttpRequest, queryset: QuerySet[DicomWebServer]) -> None:
        self._change_status(request, queryset, DicomWebServer.Status.SUSPENDED)


@admin.register(ApprovedUser)
class ApprovedUserAdmin(AuditedAdmin):
    list_display = [
        "email",
        "server",
        "institution",
        "created_at",
        "expires_at",
        "last_used",
    ]
    list_select_related = ["server__institution"]
    list_filter = ["server__status", ExpiryFilter, SelectedServerFilter]
    search_fields = ["email_key"]
    search_help_text = "A whole email, or its beginning."
    autocomplete_fields = ["server"]
    form = ApprovedUserAdminForm
    fields = ["server", "email", "expires_at", "created_at"]
    readonly_fields = ["created_at"]
    show_full_result_count = False
    paginator = CappedCountPaginator
    change_list_template = "admin/integrations/approveduser/change_list.html"

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[ApprovedUser], search_term: str
    ) -> tuple[QuerySet[ApprovedUser], bool]:
        if not search_term.strip():
            return queryset, False
        return email_search(queryset, search_term), False

    @admin.display(description="institution", ordering="server__institution__name")
    def institution(self, approved: ApprovedUser) -> str:
        return approved.server.institution.name

    def get_queryset(self, request: HttpRequest) -> QuerySet[ApprovedUser]:
        return usage.with_last_used(super().get_queryset(request))

    def save_model(
        self, request: HttpRequest, obj: ApprovedUser, form: Any, change: bool
    ) -> None:
        if "expires_at" in form.changed_data:
            obj.expiry_notified_at = None  # a new end is told anew
        super().save_model(request, obj, form, change)

    @admin.display(description="last used through the edge")
    def last_used(self, approved: ApprovedUser) -> Any:
        return getattr(approved, "last_used_at", None)

    def get_urls(self) -> list[Any]:
        lookup = path(
            "lookup/",
            self.admin_site.admin_view(self.access_lookup_view),
            name="integrations_access_lookup",
        )
        return [lookup, *super().get_urls()]

    def access_lookup_view(self, request: HttpRequest) -> HttpResponse:
        """ "What does this email see?": every server it is approved for."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        form = AccessLookupForm(request.GET or None)
        servers = None
        # From a server's page: also answer "may it use this server?".
        asked_server, server_error = None, ""
        if "server" in request.GET:
            server_id = parse_id(request.GET["server"])
            asked_server = (
                DicomWebServer.objects.filter(pk=server_id).first()
                if server_id is not None
                else None
            )
            if asked_server is None:
                server_error = (
                    f"{escaped(request.GET['server'], 50)} is not a server id."
                )
        if form.is_valid():
            servers = list(
                DicomWebServer.objects.approved_for(
                    form.cleaned_data["email"], active_only=False
                )
            )
        context = {
            **self.admin_site.each_context(request),
            "title": "What does this email see?",
            "form": form,
            "servers": servers,
            "asked_server": asked_server,
            "server_error": server_error,
            "may_use": may_use(servers, asked_server)
            if servers is not None and asked_server is not None
            else "",
            "opts": self.opts,
        }
        return TemplateResponse(
            request, "admin/integrations/access_lookup.html", context
        )


@admin.register(ApiKey)
class ApiKeyAdmin(StrictNumberLookupsMixin, admin.ModelAdmin):
    form = ApiKeyAdminForm
    list_display = [
        "name",
        "scope",
        "prefix",
        "state",
        "created_by",
        "created_at",
        "expires_at",
        "last_used_at",
    ]
    list_filter = ["scope"]
    list_select_related = ["created_by"]
    search_fields = ["name", "prefix"]
    readonly_fields = [
        "prefix",
        "created_by",
        "created_at",
        "last_used_at",
        "revoked_at",
    ]
    actions = ["revoke"]

    def get_form(
        self,
        request: HttpRequest,
        obj: ApiKey | None = None,
        change: bool = False,
        **kwargs: Any,
    ) -> Any:
        form = super().get_form(request, obj, change, **kwargs)
        # The form checks the scope against the permissions of whoever fills it.
        return type(form.__name__, (form,), {"granting_user": request.user})

    def get_fields(
        self, request: HttpRequest, obj: ApiKey | None = None
    ) -> tuple[str, ...]:
        if obj is None:
            return ("name", "scope", "expires_at")
        return ("name", "scope", "expires_at", *self.readonly_fields)

    @admin.display(description="state")
    def state(self, key: ApiKey) -> str:
        if key.revoked_at is not None:
            return "revoked"
        return "usable" if key.is_usable() else "expired"

    def save_model(
        self, request: HttpRequest, obj: ApiKey, form: Any, change: bool
    ) -> None:
        if not change:
            obj.created_by = request.user  # type: ignore[assignment]  # staff only here
            # Kept on the request only, for response_add: never in a message,
            # a session or a log.
            request._new_api_key = obj.set_new_key()  # type: ignore[attr-defined]
        super().save_model(request, obj, form, change)

    def response_add(
        self, request: HttpRequest, obj: ApiKey, post_url_continue: str | None = None
    ) -> HttpResponse:
        context = {
            **self.admin_site.each_context(request),
            "title": f"API key “{obj.name}” created",
            "key": obj,
            "raw_key": request._new_api_key,  # type: ignore[attr-defined]
            "opts": self.opts,
        }
        response = TemplateResponse(
            request, "admin/integrations/apikey/created.html", context
        )
        response["Cache-Control"] = "no-store"
        return response

    @admin.action(description="Revoke the selected keys", permissions=["change"])
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        keys = [key for key in queryset if key.revoked_at is None]
        for key in keys:
            key.revoke()
        self.message_user(request, f"Revoked {len(keys)} key(s).", messages.SUCCESS)
