"""The admin's "Audit export" page: the API's filters as a form, a preview of
the first rows, and the CSV and JSON downloads (``GET /api/v1/audit/``)."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied
from django.db.models.functions import Lower
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.http import urlencode

from integrations import auditexport
from integrations.models import DicomWebServer, Institution

PREVIEW_ROWS = 50
FIELDS = (
    ("institution", "Institution"),
    ("server", "Server"),
    ("email", "Email"),
    ("since", "From"),
    ("until", "Until"),
)


def _changes(row: auditexport.AuditRow) -> list[tuple[str, Any, Any]]:
    """(field, before, after) of a row, for the preview."""
    before, after = row.before or {}, row.after or {}
    names = list(dict.fromkeys([*before, *after]))
    return [(name, before.get(name, ""), after.get(name, "")) for name in names]


def audit_export_view(request: HttpRequest, site: Any) -> HttpResponse:
    if not auditexport.may_export(request.user):
        raise PermissionDenied
    errors: dict[str, list[str]] = {}
    rows: list[auditexport.AuditRow] = []
    more = False
    query = ""
    try:
        filters = auditexport.parse_filters(request.GET)
    except auditexport.FilterError as exc:
        errors = exc.errors
    else:
        rows, following = auditexport.page(filters, None, PREVIEW_ROWS)
        more = following is not None
        query = urlencode(filters.as_params())
    server_ids = {row.server for row in rows if row.server is not None}
    names = dict(
        DicomWebServer.objects.filter(pk__in=server_ids).values_list("pk", "name")
    )
    api = reverse("api:audit")
    prefix = f"{api}?{query}&" if query else f"{api}?"
    context = {
        **site.each_context(request),
        "title": "Audit export",
        "fields": [
            {
                "name": name,
                "label": label,
                "value": request.GET.get(name, ""),
                "errors": errors.get(name, []),
            }
            for name, label in FIELDS
        ],
        "institutions": Institution.objects.order_by(Lower("name"), "pk").values_list(
            "pk", "name"
        ),
        "preview": [
            {
                "row": row,
                "at": auditexport.iso(row.position.at),
                "server_name": names.get(row.server or 0, ""),
                "changes": _changes(row),
            }
            for row in rows
        ],
        "more": more,
        "valid": not errors,
        "csv_url": f"{prefix}format=csv",
        "json_url": f"{prefix}format=json",
    }
    return TemplateResponse(request, "admin/integrations/audit_export.html", context)
