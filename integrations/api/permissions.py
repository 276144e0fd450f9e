"""Who may do what: scope ``access`` asks, scope ``manage`` (or staff) changes."""

from __future__ import annotations

from typing import Any

from rest_framework import permissions
from rest_framework.request import Request

from integrations.api.auth import ApiClient, UploaderUser, request_user
from integrations.models import ApiKey

# The model permission a staff session needs, by HTTP method.
_STAFF_PERMISSION = {
    "GET": "view",
    "HEAD": "view",
    "OPTIONS": "view",
    "POST": "add",
    "PUT": "change",
    "PATCH": "change",
    "DELETE": "delete",
}


def _is_staff_session(request: Request) -> bool:
    user = request_user(request)
    return (
        not isinstance(user, ApiClient | UploaderUser)
        and user is not None
        and user.is_authenticated
        and user.is_active
        and user.is_staff
    )


class CanManage(permissions.BasePermission):
    """An API key of scope ``manage``, or a staff session with the model
    permission the method needs (view, add, change, delete)."""

    message = "Changing the registry needs an API key of scope 'manage'."

    def has_permission(self, request: Request, view: Any) -> bool:
        user = request.user
        if isinstance(user, ApiClient):
            return user.key.scope == ApiKey.Scope.MANAGE
        if not _is_staff_session(request):
            return False
        model = getattr(view, "permission_model", None)
        if model is None:
            return False
        # A view may name the permission it needs whatever the method (a POST
        # that changes an existing row needs "change", not "add").
        action = getattr(view, "staff_permission", None) or _STAFF_PERMISSION.get(
            request.method or "", "change"
        )
        meta = model._meta
        return user.has_perm(f"{meta.app_label}.{action}_{meta.model_name}")
