"""The top of a server's admin page: what a staffer opens it for ("who may use
it, and is it healthy?") in the first screen, with the approve box and its
own Save; the long parts (checks, configurations, capabilities) stay below.

The search box and "What does this email see?" are GET forms of their own,
placed after the change form (forms do not nest) and tied to their inputs by
the ``form`` attribute (templates/admin/integrations/dicomwebserver/).
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import Max
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html

from integrations.admin.monitoring import STATE_NOTES, _when, state_badge
from integrations.models import CheckOutcome, DicomWebServer, EdgeUsage
from integrations.monitoring import health as server_health

GLANCE_FIELDSET = "Who may use it, and is it healthy?"
# Shown only to a staffer who may read approved users (the pages they open
# refuse anyone else).
NEEDS_VIEW_APPROVED = ("approved_users_link", "email_check")
NEEDS_CHANGE = ("add_emails", "access_lasts")
SEARCH_FORM_ID = "pi-user-search"
LOOKUP_FORM_ID = "pi-email-check"


def _without(fields: Any, names: tuple[str, ...]) -> list[Any]:
    kept: list[Any] = []
    for line in fields:
        if isinstance(line, (list, tuple)):
            line = tuple(name for name in line if name not in names)
            if line:
                kept.append(line if len(line) > 1 else line[0])
        elif line not in names:
            kept.append(line)
    return kept


def first_error_field(adminform: Any) -> str | None:
    """The first field with an error, in the order the page shows them."""
    form = adminform.form
    if not form.errors:
        return None
    for fieldset in adminform:
        for line in fieldset:
            for field in line:
                name = getattr(field.field, "name", None)
                if name and name in form.errors and name in form.fields:
                    return name
    return None


class ServerPageAdminMixin:
    """Mixed into DicomWebServerAdmin."""

    glance_fields = [
        "health_brief",
        "approved_users_link",
        "approved_users_count",
        "gate_brief",
        "email_check",
    ]

    def get_fieldsets(
        self, request: HttpRequest, obj: DicomWebServer | None = None
    ) -> Any:
        fieldsets = super().get_fieldsets(request, obj)  # type: ignore[misc]
        hidden: tuple[str, ...] = ()
        if not self.has_change_permission(request, obj):  # type: ignore[attr-defined]
            hidden += NEEDS_CHANGE
        may_view_users = request.user.has_perm("integrations.view_approveduser")
        if may_view_users:
            hidden += ("approved_users_count",)
        else:
            hidden += NEEDS_VIEW_APPROVED
        return [
            (name, {**options, "fields": _without(options["fields"], hidden)})
            for name, options in fieldsets
        ]

    def render_change_form(
        self, request: HttpRequest, context: dict[str, Any], *args: Any, **kwargs: Any
    ) -> Any:
        """A page that comes back with errors lands on the first of them: its
        input gets ``autofocus``, which scrolls it into view."""
        adminform = context.get("adminform")
        name = first_error_field(adminform) if adminform is not None else None
        if name is not None:
            adminform.form.fields[name].widget.attrs["autofocus"] = True  # type: ignore[union-attr]
        context.setdefault("search_form_id", SEARCH_FORM_ID)
        context.setdefault("lookup_form_id", LOOKUP_FORM_ID)
        return super().render_change_form(request, context, *args, **kwargs)  # type: ignore[misc]

    @admin.display(description="health")
    def health_brief(self, server: DicomWebServer) -> str:
        if not server.pk:
            return "Save the server first."
        health = server_health.of(server)
        outcome = CheckOutcome(health.outcome).label if health.outcome else "—"
        return format_html(
            "{} since {}. Last checked {}: {}. Last ok {}. {} "
            '<a href="#pi-details">Checks and monitoring below</a>',
            state_badge(health.state, health.get_state_display()),
            _when(health.since),
            _when(health.last_checked_at),
            outcome,
            _when(health.last_ok_at),
            STATE_NOTES.get(health.state, ""),
        )

    @admin.display(description="approved users")
    def approved_users_link(self, server: DicomWebServer) -> str:
        """The count, the list, and a search of this server's approved users."""
        if not server.pk:
            return "Save the server first, or paste emails in the box below."
        return format_html(
            '{} <span class="pi-inline-form">'
            '<label for="pi-user-q">Search this server\'s approved users</label> '
            '<input type="search" id="pi-user-q" name="q" form="{}" '
            'placeholder="an email or its beginning" size="28"> '
            '<button type="submit" class="button" form="{}">Search</button></span>',
            self.approved_users_count(server),
            SEARCH_FORM_ID,
            SEARCH_FORM_ID,
        )

    @admin.display(description="approved users")
    def approved_users_count(self, server: DicomWebServer) -> str:
        if not server.pk:
            return "Save the server first, or paste emails in the box below."
        url = reverse("admin:integrations_approveduser_changelist")
        return format_html(
            '<a href="{}?server__id__exact={}">{} approved — view, search, remove</a>',
            url,
            server.pk,
            f"{server.approved_users.count():,}",
        )

    @admin.display(description="the gate")
    def gate_brief(self, server: DicomWebServer) -> str:
        if not server.pk:
            return "Save the server first."
        last = EdgeUsage.objects.filter(server=server).aggregate(
            last=Max("last_used_at")
        )["last"]
        usage_url = reverse(
            "admin:integrations_dicomwebserver_edge_usage", args=[server.pk]
        )
        return format_html(
            '<span class="pi-badge pi-gate-{}">{}</span> Last let someone through '
            '{}. <a href="{}">Use per day</a>',
            "on" if server.edge_enforced else "off",
            "Enforced" if server.edge_enforced else "Not enforced",
            _when(last) if last else "never (or not recorded yet)",
            usage_url,
        )

    @admin.display(description="email lookup")
    def email_check(self, server: DicomWebServer) -> str:
        if not server.pk:
            return ""
        return format_html(
            '<span class="pi-inline-form">'
            '<label for="pi-email-check-input">What does this email see?</label> '
            '<input type="text" id="pi-email-check-input" name="email" form="{}" '
            'size="28" maxlength="320" placeholder="name@hospital.org"> '
            '<button type="submit" class="button" form="{}">Look up</button></span>',
            LOOKUP_FORM_ID,
            LOOKUP_FORM_ID,
        )


def may_use(email_servers: list[DicomWebServer], server: DicomWebServer) -> str:
    """One sentence: may this email use ``server``, and why not."""
    if not any(s.pk == server.pk for s in email_servers):
        return "No: this email is not approved for it."
    if server.status != DicomWebServer.Status.ACTIVE:
        status = server.get_status_display().lower()
        return (
            f"Not now: approved, but the server is {status} "
            "(the uploader is given active servers only)."
        )
    return "Yes: approved, and the server is active."
