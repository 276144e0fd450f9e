"""``GET /api/v1/audit/``: the audit export, as JSON pages or one CSV stream."""

from __future__ import annotations

from typing import Any

from django.http import HttpResponseBase, StreamingHttpResponse
from django.utils import timezone
from django.utils.http import urlencode
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from integrations import auditexport
from integrations.api import schema
from integrations.api.auth import ApiClient
from integrations.api.pagination import PageNumberPagination
from integrations.api.permissions import CanManage
from integrations.inputs import escaped
from integrations.models import ApprovedUser

FORMATS = ("json", "csv")


class CanExportAudit(CanManage):
    """A key of scope ``manage``, or a staff session that may view
    institutions, servers and approved users (all three: the export shows
    each)."""

    def has_permission(self, request: Request, view: Any) -> bool:
        if not super().has_permission(request, view):
            return False
        if isinstance(request.user, ApiClient):
            return True
        missing = [
            perm for perm in auditexport.PERMISSIONS if not request.user.has_perm(perm)
        ]
        self.message = (
            f"Your account lacks the permission(s) {', '.join(missing)}, which "
            "the audit export needs."
        )
        return not missing


@schema.audit
class AuditExportView(APIView):
    permission_classes = [CanExportAudit]
    # What CanManage checks first (view); CanExportAudit asks for the rest.
    permission_model = ApprovedUser

    def get(self, request: Request) -> HttpResponseBase:
        params = request.query_params
        errors: dict[str, list[str]] = {}
        wanted = params.get("format", "json").strip() or "json"
        if wanted not in FORMATS:
            errors["format"] = [
                f"“{escaped(wanted, 30)}” is not a format: use json or csv."
            ]
        try:
            filters = auditexport.parse_filters(params)
        except auditexport.FilterError as exc:
            errors.update(exc.errors)
        if errors:
            raise ValidationError(errors)
        if wanted == "csv":
            return _csv(filters)
        try:
            after = (
                auditexport.Position.from_token(params["cursor"])
                if params.get("cursor")
                else None
            )
        except auditexport.FilterError as exc:
            raise ValidationError(exc.errors) from None
        size = PageNumberPagination().get_page_size(request) or 50
        found, following = auditexport.page(filters, after, size)
        next_url = None
        if following is not None:
            query = {**filters.as_params(), "cursor": following.token()}
            if "page_size" in params:
                query["page_size"] = str(size)
            next_url = request.build_absolute_uri(f"{request.path}?{urlencode(query)}")
        return Response({"next": next_url, "results": [row.as_dict() for row in found]})


def _csv(filters: auditexport.Filters) -> StreamingHttpResponse:
    stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
    return StreamingHttpResponse(
        auditexport.csv_pieces(filters),
        content_type="text/csv; charset=utf-8",
        headers={
            "Content-Disposition": f'attachment; filename="audit-{stamp}.csv"',
            "Cache-Control": "no-store",
        },
    )
