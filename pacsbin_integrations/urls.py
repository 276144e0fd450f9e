from __future__ import annotations

from django.contrib import admin
from django.urls import include, path
from django.views.generic import TemplateView

from integrations import sso
from integrations.monitoring.metrics import metrics_view

admin.site.site_header = "Pacsbin Integrations"
admin.site.site_title = "Pacsbin Integrations"
admin.site.index_title = "DICOMweb registry"

# JSON under /api/ for what a middleware raised (views: ApiErrorsMiddleware).
handler500 = "integrations.api.errors.server_error"
# What Django could not read (too many form fields): said in words.
handler400 = "integrations.api.errors.bad_request"

urlpatterns = [
    # Before the admin's own: the login page with the single sign-on button.
    path("admin/login/", sso.admin_login),
    path("admin/", admin.site.urls),
    # Staff single sign-on; the callback is the URL registered with the provider.
    path(
        "oidc/authenticate/", sso.StartView.as_view(), name="oidc_authentication_init"
    ),
    path(
        "oidc/callback/",
        sso.CallbackView.as_view(),
        name="oidc_authentication_callback",
    ),
    path("api/", include("integrations.api.urls")),
    path("metrics", metrics_view, name="metrics"),
    path("", include("integrations.urls")),
    path(
        "",
        TemplateView.as_view(
            template_name="home.html", extra_context={"title": "Pacsbin integrations"}
        ),
        name="home",
    ),
]
