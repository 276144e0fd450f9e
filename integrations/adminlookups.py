"""Changelist filters in the query string, checked before they reach SQL.

Django's admin turns a lookup it cannot convert into its "?e=1" page, but a
number too large for the column reaches the database (an OverflowError on
SQLite: a 500), and ``int()`` reads "١" as 1. Every whole-number lookup is
checked here first: ASCII digits, within 64 bits, or the "?e=1" page.
"""

from __future__ import annotations

import re
from functools import partial
from typing import Any

from django.contrib import admin
from django.contrib.admin.options import IncorrectLookupParameters
from django.contrib.admin.utils import unquote
from django.core.exceptions import FieldDoesNotExist
from django.db import models
from django.db.models.constants import LOOKUP_SEP
from django.db.models.options import Options
from django.http import HttpRequest
from django.urls import path, reverse

from integrations.inputs import MAX_ID, parse_id

_WHOLE_NUMBER = re.compile(r"-?[0-9]{1,19}", re.ASCII)
# Lookups whose value is a number (or, for "in", numbers separated by commas).
_NUMBER_LOOKUPS = {"exact", "in", "gt", "gte", "lt", "lte"}


def is_whole_number(raw: str) -> bool:
    return bool(_WHOLE_NUMBER.fullmatch(raw)) and -MAX_ID - 1 <= int(raw) <= MAX_ID


def integer_lookup(model: type[models.Model], name: str) -> str | None:
    """The lookup (``exact``, ``in``…) when the query parameter ``name``
    filters ``model`` on a whole-number field (an id, a foreign key, a count);
    None for anything else."""
    opts: Options[Any] | None = model._meta
    field: Any = None
    parts = name.split(LOOKUP_SEP)
    lookup = "exact"
    for position, part in enumerate(parts):
        if opts is None:
            if position != len(parts) - 1:
                return None
            lookup = part
            break
        try:
            field = opts.pk if part == "pk" else opts.get_field(part)
        except FieldDoesNotExist:
            if field is None or position != len(parts) - 1:
                return None
            lookup = part
            break
        related = field.related_model if field.is_relation else None
        opts = related._meta if related is not None else None
    if field is None:
        return None
    if field.is_relation:
        field = field.target_field
    if not isinstance(field, models.IntegerField) or lookup not in _NUMBER_LOOKUPS:
        return None
    return lookup


class StrictNumberLookupsMixin:
    """Mixed into every ModelAdmin: whole-number filters in the changelist's
    query string are checked before the query runs."""

    def get_changelist_instance(self, request: HttpRequest) -> Any:
        model = self.model  # type: ignore[attr-defined]
        for name in request.GET:
            if name.startswith("_"):
                continue
            lookup = integer_lookup(model, name)
            if lookup is None:
                continue
            for value in request.GET.getlist(name):
                values = value.split(",") if lookup == "in" else [value]
                if not all(is_whole_number(v) for v in values):
                    raise IncorrectLookupParameters(
                        f"{name}={value!r} is not a whole number."
                    )
        return super().get_changelist_instance(request)  # type: ignore[misc]

    def get_object(
        self, request: HttpRequest, object_id: str, from_field: str | None = None
    ) -> Any:
        """None (Django's "not found") for an id int() would misread."""
        pk = self.model._meta.pk  # type: ignore[attr-defined]
        if (
            from_field is None
            and isinstance(pk, models.IntegerField)
            and parse_id(unquote(object_id)) is None
        ):
            return None
        return super().get_object(request, object_id, from_field)  # type: ignore[misc]


class RegistryAdminSite(admin.AdminSite):
    """The admin site: every ModelAdmin registered on it, ours or another
    app's, gets the checked whole-number lookups."""

    # The sidebar repeats the index and takes 300 px from every list: without
    # it the columns a staffer decides with fit 1280 px.
    enable_nav_sidebar = False

    def register(
        self, model_or_iterable: Any, admin_class: Any = None, **options: Any
    ) -> None:
        admin_class = admin_class or admin.ModelAdmin
        if not issubclass(admin_class, StrictNumberLookupsMixin):
            admin_class = type(
                admin_class.__name__,
                (StrictNumberLookupsMixin, admin_class),
                {"__module__": admin_class.__module__},
            )
        super().register(model_or_iterable, admin_class, **options)

    def get_urls(self) -> list[Any]:
        from integrations.admin.audit import audit_export_view

        audit_export = path(
            "audit/",
            self.admin_view(partial(audit_export_view, site=self)),
            name="audit_export",
        )
        return [audit_export, *super().get_urls()]

    def index(self, request: HttpRequest, extra_context: Any = None) -> Any:
        """The index leads with what needs a staffer today: requests waiting
        for review, "What does this email see?" and the approvals ending
        within a week (each only for those allowed to open it)."""
        from integrations import expiry
        from integrations.models import OnboardingRequest

        user = request.user
        today: dict[str, Any] = {}
        if user.has_perm("integrations.view_onboardingrequest"):
            today["waiting_for_review"] = (
                OnboardingRequest.objects.confirmed()
                .filter(status=OnboardingRequest.Status.SUBMITTED)
                .count()
            )
            today["queue_url"] = reverse(
                "admin:integrations_onboardingrequest_changelist", current_app=self.name
            )
        if user.has_perm("integrations.view_approveduser"):
            today["lookup_url"] = reverse(
                "admin:integrations_access_lookup", current_app=self.name
            )
            today["ending_soon"] = expiry.ending_soon().count()
            today["ending_soon_url"] = (
                reverse(
                    "admin:integrations_approveduser_changelist",
                    current_app=self.name,
                )
                + "?expiry=soon"
            )
        from integrations.auditexport import may_export

        if may_export(user):
            today["audit_url"] = reverse("admin:audit_export", current_app=self.name)
        return super().index(request, {**(extra_context or {}), "today": today})
