"""URLs of REST API v1, mounted at /api/ by the project's urls."""

from __future__ import annotations

from django.urls import path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.routers import SimpleRouter

from integrations.api import (
    audit_views,
    connectivity_views,
    edge_views,
    review_views,
    views,
)

app_name = "api"

router = SimpleRouter(trailing_slash=True)
router.register("v1/institutions", views.InstitutionViewSet, basename="institution")
router.register("v1/servers", views.DicomWebServerViewSet, basename="server")

urlpatterns = [
    path("v1/access", views.access_question, name="access"),
    # The same question with a trailing slash, as many clients write it.
    path("v1/access/", views.access_question_with_slash, name="access-slash"),
    path("v1/health", views.HealthView.as_view(), name="health"),
    path("v1/audit/", audit_views.AuditExportView.as_view(), name="audit"),
    path("v1/edge/jwks.json", edge_views.jwks, name="edge-jwks"),
    path("v1/edge/verify", edge_views.verify, name="edge-verify"),
    path(
        "v1/servers/<int:server_id>/edge-key",
        edge_views.EdgeKeyView.as_view(),
        name="edge-key",
    ),
    path(
        "v1/servers/<int:server_id>/approved-users/",
        views.ApprovedUserListView.as_view(),
        name="approved-users",
    ),
    path(
        "v1/servers/<int:server_id>/approved-users/<path:email>",
        views.ApprovedUserDetailView.as_view(),
        name="approved-user",
    ),
    path(
        "v1/servers/<int:server_id>/checks/",
        connectivity_views.ServerChecksView.as_view(),
        name="checks",
    ),
    path(
        "v1/servers/<int:server_id>/proxy-config/<str:kind>",
        connectivity_views.ProxyConfigView.as_view(),
        name="proxy-config",
    ),
    path(
        "v1/servers/<int:server_id>/health",
        connectivity_views.ServerHealthView.as_view(),
        name="server-health",
    ),
    path(
        "v1/servers/<int:server_id>/access-review",
        review_views.AccessReviewStartView.as_view(),
        name="access-review",
    ),
    *router.urls,
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="api:schema"), name="docs"),
    # Last: any other path under /api/ is a JSON 404, not Django's HTML page.
    re_path(r"", views.api_not_found),
]
