"""Access reviews in the admin: the list of reviews (sent, overdue,
answered; which servers are due), the server list's "Start an access review
now" action and its filter by review state."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib import admin, messages
from django.db import transaction
from django.db.models import Exists, Max, OuterRef, Q, QuerySet
from django.http import HttpRequest
from django.utils import timezone
from django.utils.html import format_html

from integrations.accessreviews import flows
from integrations.adminlookups import StrictNumberLookupsMixin
from integrations.models import AccessReview, DicomWebServer

# Servers one "Start an access review now" may start (each is one mail).
MAX_SERVERS_PER_ACTION = 100


class ServerReviewFilter(admin.SimpleListFilter):
    """Servers by where their access review stands."""

    title = "access review"
    parameter_name = "access_review"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [
            ("due", "Due (sent at the next run)"),
            ("sent", "Sent, waiting"),
            ("overdue", "Overdue"),
        ]

    def queryset(
        self, request: HttpRequest, queryset: QuerySet[DicomWebServer]
    ) -> QuerySet[DicomWebServer]:
        value = self.value()
        if value in ("sent", "overdue"):
            return queryset.filter(
                pk__in=AccessReview.objects.filter(state=value).values("server_id")
            )
        if value == "due":
            if not settings.ACCESS_REVIEW_DAYS:
                return queryset.none()
            cutoff = timezone.now() - timedelta(days=settings.ACCESS_REVIEW_DAYS)
            return (
                queryset.filter(status=DicomWebServer.Status.ACTIVE)
                .annotate(
                    last_review=Max("access_reviews__created_at"),
                    has_open=Exists(flows.open_reviews().filter(server=OuterRef("pk"))),
                )
                .filter(has_open=False)
                .filter(
                    Q(last_review__lte=cutoff)
                    | Q(last_review__isnull=True, created_at__lte=cutoff)
                )
            )
        return queryset


class AccessReviewActionMixin:
    """Mixed into DicomWebServerAdmin: start a review now."""

    def has_start_review_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("integrations.add_accessreview")

    @admin.action(
        description="Start an access review now (mail the contact)",
        permissions=["start_review"],
    )
    def start_access_review(
        self, request: HttpRequest, queryset: QuerySet[DicomWebServer]
    ) -> None:
        servers = list(
            queryset.select_related("institution")[: MAX_SERVERS_PER_ACTION + 1]
        )
        if len(servers) > MAX_SERVERS_PER_ACTION:
            self.message_user(  # type: ignore[attr-defined]
                request,
                f"Select at most {MAX_SERVERS_PER_ACTION} servers at once.",
                messages.ERROR,
            )
            return
        started = 0
        for server in servers:
            try:
                one = flows.start_review(server, started_by=request.user.get_username())
            except flows.ReviewRefused as exc:
                self.message_user(request, str(exc), messages.WARNING)  # type: ignore[attr-defined]
                continue
            started += 1
            self.message_user(  # type: ignore[attr-defined]
                request,
                f"Access review of “{server.name}” sent to {one.review.sent_to}, "
                f"due {one.review.due_at:%Y-%m-%d}.",
                messages.SUCCESS,
            )
        if not started and not servers:
            self.message_user(request, "No server selected.", messages.INFO)  # type: ignore[attr-defined]


@admin.register(AccessReview)
class AccessReviewAdmin(StrictNumberLookupsMixin, admin.ModelAdmin):
    list_display = [
        "server",
        "institution",
        "state_badge",
        "sent_to",
        "created_at",
        "due_at",
        "answered_at",
        "removed_count",
    ]
    list_filter = ["state", "server__institution"]
    list_select_related = ["server__institution"]
    search_fields = ["server__name", "server__institution__name", "sent_to"]
    date_hierarchy = "created_at"
    actions = ["cancel"]
    fields = (
        "server",
        "state",
        "sent_to",
        "started_by",
        "created_at",
        "due_at",
        "answered_at",
        "kept_count",
        "removed_list",
        "note",
    )
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest) -> bool:
        # Started from the server list's action or the API: both mail the
        # contact and hold the one-open-review rule.
        return False

    def has_delete_permission(
        self, request: HttpRequest, obj: AccessReview | None = None
    ) -> bool:
        return False  # the record of a review is kept

    @admin.display(description="institution", ordering="server__institution__name")
    def institution(self, review: AccessReview) -> str:
        return review.server.institution.name

    @admin.display(description="state", ordering="state")
    def state_badge(self, review: AccessReview) -> str:
        label = review.get_state_display()
        if review.state == AccessReview.State.SENT and review.due_at <= timezone.now():
            label += " (past due; marked at the next run)"
        return format_html(
            '<span class="pi-badge pi-review-{}">{}</span>', review.state, label
        )

    @admin.display(description="removed")
    def removed_count(self, review: AccessReview) -> int:
        return len(review.removed or [])

    @admin.display(description="removed emails")
    def removed_list(self, review: AccessReview) -> str:
        removed = review.removed or []
        return ", ".join(str(email) for email in removed) or "—"

    @admin.action(
        description="Cancel the selected open reviews (their links stop working)",
        permissions=["change"],
    )
    def cancel(self, request: HttpRequest, queryset: QuerySet[AccessReview]) -> None:
        with transaction.atomic():
            cancelled = queryset.filter(state__in=AccessReview.OPEN_STATES).update(
                state=AccessReview.State.CANCELLED
            )
        self.message_user(
            request, f"{cancelled} review(s) cancelled.", messages.SUCCESS
        )
