from __future__ import annotations

from django.urls import path

from integrations.accessreviews import views as access_reviews
from integrations.onboarding import views as onboarding

app_name = "integrations"

urlpatterns: list = [
    path("onboarding/", onboarding.new_request, name="onboarding"),
    path(
        "onboarding/submitted/<str:link>/",
        onboarding.submitted,
        name="onboarding_submitted",
    ),
    path("onboarding/status/<str:link>/", onboarding.status, name="onboarding_status"),
    path(
        "onboarding/status/<str:link>/browser-check",
        onboarding.browser_check,
        name="onboarding_browser_check",
    ),
    path(
        "onboarding/status/<str:link>/resend-confirmation",
        onboarding.resend_confirmation,
        name="onboarding_resend_confirmation",
    ),
    path(
        "onboarding/status/<str:link>/proxy-urls",
        onboarding.proxy_urls,
        name="onboarding_proxy_urls",
    ),
    path(
        "onboarding/mine/<str:link>/",
        onboarding.mailed_status,
        name="onboarding_mailed_status",
    ),
    path(
        "onboarding/confirm/<str:link>/",
        onboarding.confirm,
        name="onboarding_confirm",
    ),
    path(
        "onboarding/status/<str:link>/config.jsonc",
        onboarding.pacsbin_config_download,
        name="onboarding_pacsbin_config",
    ),
    path(
        "onboarding/confirm-contact/<str:link>/",
        onboarding.confirm_contact,
        name="onboarding_confirm_contact",
    ),
    path(
        "onboarding/status/<str:link>/change/",
        onboarding.update_request,
        name="onboarding_update",
    ),
    # Under /onboarding/: the public pages' body cap and CSP apply.
    path(
        "onboarding/access-review/<str:link>/",
        access_reviews.review_page,
        name="access_review",
    ),
]
