"""The one place tests make rows: institutions, servers, approvals, API keys
and onboarding requests."""

from __future__ import annotations

from typing import Any

from integrations import registry
from integrations.models import (
    ApiKey,
    ApprovedUser,
    DicomWebServer,
    Institution,
    OnboardingRequest,
)
from integrations.onboarding import lifecycle


def make_institution(name: str = "University Hospital", **fields: Any) -> Institution:
    return Institution.objects.create(name=name, **fields)


def approve(server: DicomWebServer, *emails: str) -> list[ApprovedUser]:
    rows = [ApprovedUser.objects.build(server, email) for email in emails]
    for row in rows:
        row.save()
    return rows


def make_server(
    institution: Institution,
    name: str = "Main PACS",
    status: str = DicomWebServer.Status.ACTIVE,
    emails: list[str] | None = None,
    **fields: Any,
) -> DicomWebServer:
    """A server, with ``emails`` approved through the registry's own flow."""
    fields.setdefault("qido_url", "https://pacs.example.edu/dicomweb")
    fields.setdefault("wado_url", fields["qido_url"])
    row = DicomWebServer.objects.create(
        institution=institution, name=name, status=status, **fields
    )
    if emails:
        registry.add_approved_users(row, emails)
    return row


def server(
    institution: Institution,
    name: str,
    status: str = DicomWebServer.Status.ACTIVE,
    emails: list[str] | None = None,
) -> DicomWebServer:
    """``make_server`` with URLs of its own, made from its name (QIDO and WADO
    differ), for tests that tell several servers apart."""
    slug = name.lower().replace(" ", "-")
    return make_server(
        institution,
        name,
        status,
        emails,
        qido_url=f"https://{slug}.example/dicomweb",
        wado_url=f"https://{slug}.example/wado",
    )


def api_key(name: str, scope: str = "access", **kwargs: Any) -> tuple[ApiKey, str]:
    return ApiKey.objects.create_key(name, scope, **kwargs)


def confirm(onboarding_request: OnboardingRequest) -> OnboardingRequest:
    """What the contact's press on the emailed link's button does."""
    lifecycle.confirm_request(onboarding_request, "http://testserver")
    return onboarding_request


def submitted_request(confirmed: bool = True, **fields: Any) -> OnboardingRequest:
    """A new-server request stored as the public form stores it, and (unless
    ``confirmed`` is False) confirmed by its contact, so in the review queue."""
    data = {
        "institution_name": "St. Example Hospital",
        "contact_name": "Pat Admin",
        "contact_email": "pat.admin@st-example.org",
        "server_name": "Main PACS",
        "qido_url": "https://pacs.st-example.org/dicomweb",
        "wado_url": "https://pacs.st-example.org/dicomweb",
        "cors_mode": DicomWebServer.CorsMode.REVERSE_PROXY,
        "needs_credentials": False,
        "notes": "",
        "emails_to_add": ["ann@st-example.org", "bob@st-example.org"],
        "emails_to_remove": [],
        **fields,
    }
    r = lifecycle.submit_request(
        data, client_address="192.0.2.10", site_url="http://testserver"
    )
    return confirm(r) if confirmed else r


def update_request_for(
    server: DicomWebServer, confirmed: bool = True, **fields: Any
) -> OnboardingRequest:
    """A change to ``server`` as its status page stores it, confirmed (unless
    ``confirmed`` is False) from the contact address on record."""
    institution = server.institution
    data = {
        "contact_name": institution.contact_name,
        "contact_email": institution.contact_email,
        "server_name": server.name,
        "qido_url": server.qido_url,
        "wado_url": server.wado_url,
        "cors_mode": server.cors_mode,
        "needs_credentials": server.needs_credentials,
        "notes": "",
        "emails_to_add": [],
        "emails_to_remove": [],
        **fields,
    }
    r = lifecycle.submit_request(
        data, client_address="192.0.2.10", site_url="http://testserver", server=server
    )
    return confirm(r) if confirmed else r
