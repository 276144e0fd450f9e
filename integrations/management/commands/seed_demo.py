"""Demo data: a few institutions, servers in each status, approved emails.

Idempotent: running it again leaves the same data (rows are found by name).
"""

from __future__ import annotations

from typing import Any, NotRequired, TypedDict

from django.core.management.base import BaseCommand
from django.db import transaction

from integrations import audit, registry
from integrations.models import DicomWebServer, Institution

Status = DicomWebServer.Status
CorsMode = DicomWebServer.CorsMode


class DemoServer(TypedDict):
    name: str
    qido_url: str
    wado_url: str
    status: str
    cors_mode: str
    needs_credentials: NotRequired[bool]
    pacsbin_proxy: NotRequired[dict[str, Any]]
    emails: list[str]


class DemoInstitution(TypedDict):
    name: str
    contact_name: str
    contact_email: str
    servers: list[DemoServer]


DEMO: list[DemoInstitution] = [
    {
        "name": "University Hospital",
        "contact_name": "Ada Admin",
        "contact_email": "pacs-team@university.example",
        "servers": [
            {
                "name": "University Hospital PACS",
                "qido_url": "https://pacs.university.example/dicomweb",
                "wado_url": "https://pacs.university.example/dicomweb",
                "status": Status.ACTIVE,
                "cors_mode": CorsMode.REVERSE_PROXY,
                "emails": [
                    "jane.doe@university.example",
                    "john.roe@university.example",
                    "radiology.fellow@university.example",
                ],
            },
            {
                "name": "Research Archive",
                "qido_url": "https://research.university.example/qido",
                "wado_url": "https://research.university.example/wado",
                "status": Status.PENDING,
                "cors_mode": CorsMode.DIRECT,
                "emails": ["jane.doe@university.example"],
            },
        ],
    },
    {
        "name": "County General",
        "contact_name": "Ben IT",
        "contact_email": "it@countygeneral.example",
        "servers": [
            {
                "name": "County General VNA",
                "qido_url": "https://vna.countygeneral.example/dicom-web",
                "wado_url": "https://vna.countygeneral.example/dicom-web",
                "status": Status.ACTIVE,
                "cors_mode": CorsMode.REVERSE_PROXY,
                "emails": [
                    "jane.doe@university.example",
                    "dr.smith@countygeneral.example",
                ],
            },
            {
                # An archive that speaks only DIMSE, behind Pacsbin's proxy:
                # the uploader's URLs are the proxy's origin.
                "name": "County General PACS (DIMSE)",
                "qido_url": "https://pacs-proxy.countygeneral.example",
                "wado_url": "https://pacs-proxy.countygeneral.example",
                "status": Status.ACTIVE,
                "cors_mode": CorsMode.DIMSE_PROXY,
                "pacsbin_proxy": {
                    "mode": "dimse",
                    "archive_ae_title": "CG_PACS",
                    "archive_host": "10.20.0.15",
                    "archive_port": 11112,
                    "proxy_ae_title": "PACSBIN_PROXY",
                    "proxy_dimse_port": 8888,
                },
                "emails": [
                    "jane.doe@university.example",
                    "dr.smith@countygeneral.example",
                ],
            },
            {
                "name": "Old Cardiology PACS",
                "qido_url": "http://cardio.countygeneral.example/pacs/dicomweb/qido",
                "wado_url": "http://cardio.countygeneral.example/pacs/dicomweb/wado",
                "status": Status.SUSPENDED,
                "cors_mode": CorsMode.DIRECT,
                "needs_credentials": True,
                "emails": ["dr.smith@countygeneral.example"],
            },
        ],
    },
]


def local_archive(port: int) -> DemoInstitution:
    """The demo's one reachable archive: the DICOMweb stub that ``make run``
    starts on loopback (bench/stub.py), so a healthy server shows beside the
    ``.example`` ones, which never answer."""
    root = f"http://127.0.0.1:{port}/archive/1/dicom-web"
    return {
        "name": "Demo Imaging Center",
        "contact_name": "Demo Contact",
        "contact_email": "it@demo-imaging.example",
        "servers": [
            {
                "name": "Local demo archive",
                "qido_url": root,
                "wado_url": root,
                "status": Status.ACTIVE,
                "cors_mode": CorsMode.DIRECT,
                "emails": ["jane.doe@university.example"],
            }
        ],
    }


class Command(BaseCommand):
    help = "Create demo institutions, servers and approved emails (idempotent)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument(
            "--archive-port",
            type=int,
            metavar="PORT",
            help="also register the local demo archive (make run starts it there)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        created = 0
        demo = list(DEMO)
        if options.get("archive_port"):
            demo.append(local_archive(options["archive_port"]))
        with audit.acting_as(label="seed_demo"), transaction.atomic():
            for spec in demo:
                institution, made = Institution.objects.get_or_create(
                    name=spec["name"],
                    defaults={
                        "contact_name": spec["contact_name"],
                        "contact_email": spec["contact_email"],
                    },
                )
                created += made
                for server_spec in spec["servers"]:
                    fields = {k: v for k, v in server_spec.items() if k != "emails"}
                    name = fields.pop("name")
                    server, made = DicomWebServer.objects.get_or_create(
                        institution=institution, name=name, defaults=fields
                    )
                    created += made
                    result = registry.add_approved_users(server, server_spec["emails"])
                    created += len(result.added)
        self.stdout.write(f"Demo data ready ({created} new rows).")
