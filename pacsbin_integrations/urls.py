from __future__ import annotations

from django.conf import settings
from django.contrib import admin
from django.urls import include, path
from django.views.generic import TemplateView

admin.site.site_header = "Pacsbin Integrations"
admin.site.site_title = "Pacsbin Integrations"
admin.site.index_title = "DICOMweb registry"

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/", include("integrations.api.urls")),
    path("", include("integrations.urls")),
    path(
        "",
        TemplateView.as_view(
            template_name="home.html", extra_context={"title": "Pacsbin integrations"}
        ),
        name="home",
    ),
]

if settings.BENCH_FLOOR:  # `make bench` only: the access question's floor
    from integrations.api.floor import floor

    urlpatterns.insert(0, path("api/v1/_floor", floor))
