"""What the status page checks and configures for a request: the browser-side
check's target, the fix-it configurations and the checks recorded so far."""

from __future__ import annotations

import copy

from django.conf import settings

from integrations.connectivity import proxyconfig
from integrations.models import (
    ConnectivityCheck,
    DicomWebServer,
    Institution,
    OnboardingRequest,
)

CHECKS_SHOWN = 10


def live_server(onboarding_request: OnboardingRequest) -> DicomWebServer | None:
    """The registry server a check from this request's page also belongs to:
    only once the request is approved. Before that, an update's server still
    has the old URLs while the page checks the requested ones."""
    r = onboarding_request
    if r.status == OnboardingRequest.Status.APPROVED and r.server_id is not None:
        return r.server
    return None


def server_for(onboarding_request: OnboardingRequest) -> DicomWebServer:
    """The server the page checks and writes configurations for: the live one
    once approved (what the uploader uses), else the request's own details as
    an unsaved server. Writes nothing."""
    r = onboarding_request
    live = live_server(r)
    if live is not None:
        return live
    return DicomWebServer(
        institution=Institution(name=r.institution_name), **r.server_values()
    )


def archive_server_for(onboarding_request: OnboardingRequest) -> DicomWebServer:
    """The server the fix-it configurations proxy to: the archive itself.
    After the contact gave a reverse proxy's URLs the request's (and, once
    approved, the live server's) URLs are the proxy's, so the archive's own,
    kept on the request, are used. Writes nothing."""
    r = onboarding_request
    server = server_for(r)
    if not r.gave_proxy_urls:
        return server
    # A copy, so no field of the server is forgotten here; only the URLs differ.
    archive = copy.copy(server)
    archive.qido_url = r.archive_qido_url
    archive.wado_url = r.archive_wado_url
    return archive


def fixit_configs(server: DicomWebServer) -> tuple[list[tuple[str, str]], str]:
    """The configurations, or none and why (a URL stored before the rule).
    None for a server behind Pacsbin's proxy: ``pacsbin_view`` is its fix."""
    if proxyconfig.behind_pacsbin_proxy(server):
        return [], ""
    return proxyconfig.render_all(server)


def pacsbin_view(
    onboarding_request: OnboardingRequest,
) -> proxyconfig.PacsbinProxyView | None:
    """Pacsbin's proxy's config.jsonc and the archive's sheet for the server
    this request describes, when it is behind the proxy; else None."""
    server = server_for(onboarding_request)
    if not proxyconfig.behind_pacsbin_proxy(server):
        return None
    return proxyconfig.pacsbin_view(server)


def recent_checks(onboarding_request: OnboardingRequest) -> list[ConnectivityCheck]:
    """The browser checks run from this request's page, newest first."""
    return list(
        onboarding_request.connectivity_checks.order_by("-created_at", "-pk")[
            :CHECKS_SHOWN
        ]
    )


def origin_is_exact(page_origin: str) -> bool:
    """Whether a check from this origin tells what the uploader will see."""
    return page_origin in settings.UPLOADER_ORIGINS
