from __future__ import annotations

from io import StringIO

from django.core.management import call_command
from django.test import TestCase

from integrations.models import ApprovedUser, DicomWebServer, Institution


def snapshot() -> tuple:
    return (
        sorted(Institution.objects.values_list("name", "contact_email")),
        sorted(
            DicomWebServer.objects.values_list(
                "institution__name", "name", "status", "qido_url"
            )
        ),
        sorted(ApprovedUser.objects.values_list("server__name", "email")),
    )


class SeedDemoTests(TestCase):
    def test_it_creates_servers_in_every_status(self) -> None:
        call_command("seed_demo", stdout=StringIO())
        statuses = set(DicomWebServer.objects.values_list("status", flat=True))
        assert statuses == {"pending", "active", "suspended"}
        assert ApprovedUser.objects.exists()

    def test_running_it_twice_gives_the_same_data(self) -> None:
        call_command("seed_demo", stdout=StringIO())
        first = snapshot()
        call_command("seed_demo", stdout=StringIO())
        assert snapshot() == first

    def test_it_includes_a_dimse_archive_behind_pacsbins_proxy(self) -> None:
        from integrations.connectivity import proxyconfig

        call_command("seed_demo", stdout=StringIO())
        proxied = DicomWebServer.objects.filter(cors_mode="dimse_proxy")
        assert [s.pacsbin_proxy["mode"] for s in proxied] == ["dimse"]
        for server in DicomWebServer.objects.all():
            server.full_clean()  # every demo row passes the rules
        config = proxyconfig.render(proxied.get(), "pacsbin")
        assert '"proxyMode": "dimse"' in config
