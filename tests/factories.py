"""Small helpers to make registry rows in tests."""

from __future__ import annotations

from typing import Any

from integrations.models import ApprovedUser, DicomWebServer, Institution


def make_institution(name: str = "University Hospital", **fields: Any) -> Institution:
    return Institution.objects.create(name=name, **fields)


def make_server(
    institution: Institution,
    name: str = "Main PACS",
    status: str = DicomWebServer.Status.ACTIVE,
    **fields: Any,
) -> DicomWebServer:
    fields.setdefault("qido_url", "https://pacs.example.edu/dicomweb")
    fields.setdefault("wado_url", fields["qido_url"])
    return DicomWebServer.objects.create(
        institution=institution, name=name, status=status, **fields
    )


def approve(server: DicomWebServer, *emails: str) -> list[ApprovedUser]:
    rows = [ApprovedUser.objects.build(server, email) for email in emails]
    for row in rows:
        row.save()
    return rows
