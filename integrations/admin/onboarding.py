"""Staff review of onboarding requests in the admin: a queue (confirmed ones
waiting for review by default), a review page with the differences against
the live registry, and approve / reject buttons that call the named flows."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from integrations.adminlookups import StrictNumberLookupsMixin
from integrations.connectivity import proxyconfig
from integrations.inputs import escaped, parse_id
from integrations.models import Institution, OnboardingRequest
from integrations.onboarding import cors, lifecycle, status_checks
from integrations.onboarding.views import site_url
from integrations.validators import describe_pacsbin_proxy


class ReviewStatusFilter(admin.SimpleListFilter):
    """The queue: confirmed requests waiting for review unless another status
    is picked. Requests whose contact has not confirmed their email address
    are never in it; they have their own two choices."""

    title = "status"
    parameter_name = "status"
    ALL = "all"
    UNCONFIRMED = "unconfirmed"
    EXPIRED = "expired"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [
            *OnboardingRequest.Status.choices,
            (self.UNCONFIRMED, "Waiting for email confirmation"),
            (self.EXPIRED, "Expired unconfirmed"),
            (self.ALL, "All"),
        ]

    def value(self) -> str:
        return super().value() or OnboardingRequest.Status.SUBMITTED

    def queryset(
        self, request: HttpRequest, queryset: QuerySet[OnboardingRequest]
    ) -> QuerySet[OnboardingRequest]:
        value = self.value()
        if value == self.ALL:
            return queryset
        if value == self.UNCONFIRMED:
            return queryset.awaiting_confirmation()  # type: ignore[attr-defined]
        if value == self.EXPIRED:
            return queryset.confirmation_expired()  # type: ignore[attr-defined]
        return queryset.confirmed().filter(status=value)  # type: ignore[attr-defined]

    def choices(self, changelist: Any) -> Any:
        for lookup, title in self.lookup_choices:
            yield {
                "selected": self.value() == lookup,
                "query_string": changelist.get_query_string(
                    {self.parameter_name: lookup}
                ),
                "display": title,
            }


@admin.register(OnboardingRequest)
class OnboardingRequestAdmin(StrictNumberLookupsMixin, admin.ModelAdmin):
    list_display = [
        "reference",
        "kind",
        "institution_name",
        "server_name",
        "contact_email",
        "email_count",
        "status_badge",
        "created_at",
    ]
    list_display_links = ["reference", "institution_name"]
    list_filter = [ReviewStatusFilter, "kind"]
    search_fields = ["reference", "institution_name", "server_name", "contact_email"]
    ordering = ["created_at", "pk"]  # oldest first: a queue
    list_per_page = 50

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # requests come from the public form only

    @admin.display(description="emails")
    def email_count(self, r: OnboardingRequest) -> str:
        text = f"+{len(r.emails_to_add)}"
        if r.emails_to_remove:
            text += f" / −{len(r.emails_to_remove)}"
        return text

    @admin.display(description="status", ordering="status")
    def status_badge(self, r: OnboardingRequest) -> str:
        css = {"submitted": "pending", "approved": "active", "rejected": "suspended"}
        if r.confirmation_expired:
            return format_html(
                '<span class="pi-badge pi-status-suspended">{}</span>', "Expired"
            )
        if not r.is_confirmed:
            return format_html(
                '<span class="pi-badge pi-status-pending">{}</span>', "Unconfirmed"
            )
        return format_html(
            '<span class="pi-badge pi-status-{}">{}</span>',
            css[r.status],
            r.get_status_display(),
        )

    def get_urls(self) -> list[Any]:
        view = self.admin_site.admin_view
        info = self.opts.app_label, self.opts.model_name
        return [
            path(
                "<int:pk>/approve/",
                view(self.approve_view),
                name="{}_{}_approve".format(*info),
            ),
            path(
                "<int:pk>/reject/",
                view(self.reject_view),
                name="{}_{}_reject".format(*info),
            ),
            *super().get_urls(),
        ]

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        """The review page replaces the edit form: a request is reviewed, never
        edited (what the contact sent stays as sent)."""
        if request.method != "GET":
            return HttpResponse(status=405)
        pk = parse_id(unquote(object_id))
        if pk is None:
            raise Http404(f"“{escaped(object_id, 50)}” is not a request id.")
        r = get_object_or_404(
            OnboardingRequest.objects.select_related(
                "server__institution", "institution", "reviewer", "submitted_from"
            ),
            pk=pk,
        )
        if not self.has_view_permission(request, r):
            raise PermissionDenied
        existing_institution = None
        if r.kind == OnboardingRequest.Kind.NEW and r.is_open:
            existing_institution = Institution.objects.filter(
                name__iexact=r.institution_name
            ).first()
        can_reject = (
            r.is_open and r.is_confirmed and self.has_change_permission(request, r)
        )
        missing = lifecycle.missing_permissions(r, request.user) if can_reject else []
        context = {
            **self.admin_site.each_context(request),
            "title": f"Review {r.reference}",
            "opts": self.opts,
            "r": r,
            "original": r,
            "can_reject": can_reject,
            "can_approve": can_reject and not missing,
            "missing_to_approve": missing,
            "differences": lifecycle.differences(r) if r.kind == "update" else [],
            "stale": lifecycle.stale_reason(r)
            if r.kind == "update" and r.is_open
            else "",
            "emails": lifecycle.email_review(r),
            "existing_institution": existing_institution,
            "name_clash": lifecycle.name_clash(r) if r.is_open else "",
            "guidance": cors.guidance_for(r.cors_mode, r.needs_credentials),
            "checks": status_checks.recent_checks(r),
            "proxy_described": describe_pacsbin_proxy(r.pacsbin_proxy),
            "pacsbin": status_checks.pacsbin_view(r),
            "origins": proxyconfig.allowed_origins(),
        }
        return TemplateResponse(
            request, "admin/integrations/onboardingrequest/review.html", context
        )

    def _decide(self, request: HttpRequest, pk: int) -> OnboardingRequest:
        r = get_object_or_404(OnboardingRequest, pk=pk)
        if not self.has_change_permission(request, r):
            raise PermissionDenied
        return r

    def _review_url(self, r: OnboardingRequest) -> str:
        return reverse("admin:integrations_onboardingrequest_change", args=[r.pk])

    def _queue_url(self) -> str:
        return reverse("admin:integrations_onboardingrequest_changelist")

    def approve_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        if request.method != "POST":
            return HttpResponse(status=405)
        r = self._decide(request, pk)
        if r.is_open and lifecycle.missing_permissions(r, request.user):
            raise PermissionDenied
        try:
            result = lifecycle.approve_request(
                r,
                request.user,
                activate=request.POST.get("activate") == "on",
                site_url=site_url(request),
                check_permissions=True,
                server_name=request.POST.get("server_name"),
            )
        except lifecycle.ReviewError as exc:
            self.message_user(request, exc.message, messages.ERROR)
            return HttpResponseRedirect(self._review_url(r))
        self.message_user(request, result.summary(), messages.SUCCESS)
        return HttpResponseRedirect(self._queue_url())

    def reject_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        if request.method != "POST":
            return HttpResponse(status=405)
        r = self._decide(request, pk)
        try:
            lifecycle.reject_request(
                r,
                request.user,
                request.POST.get("reason", ""),
                site_url=site_url(request),
            )
        except lifecycle.ReviewError as exc:
            self.message_user(request, exc.message, messages.ERROR)
            return HttpResponseRedirect(self._review_url(r))
        self.message_user(
            request,
            f"{r.reference} rejected; the contact is told why.",
            messages.SUCCESS,
        )
        return HttpResponseRedirect(self._queue_url())
