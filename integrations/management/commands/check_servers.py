"""python manage.py check_servers [--all | ID ...] [--origin O]"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from integrations import audit
from integrations.connectivity import run_check
from integrations.models import ConnectivityCheck, DicomWebServer
from integrations.validators import normalize_origin


class Command(BaseCommand):
    help = (
        "Run the server-side connectivity and CORS check on DICOMweb servers and "
        "record it. Exits non-zero when any check is not ok."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("ids", nargs="*", type=int, help="server ids")
        parser.add_argument("--all", action="store_true", help="every server")
        parser.add_argument(
            "--origin",
            action="append",
            help="origin to check for (repeatable; default: each UPLOADER_ORIGINS)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        ids: list[int] = options["ids"]
        if bool(ids) == bool(options["all"]):
            raise CommandError("Give server ids, or --all (not both).")
        chosen = DicomWebServer.objects.select_related("institution").order_by("pk")
        if ids:
            chosen = chosen.filter(pk__in=ids)
            missing = sorted(set(ids) - {s.pk for s in chosen})
            if missing:
                raise CommandError(
                    "No server with id " + ", ".join(str(i) for i in missing) + "."
                )
        try:
            origins = [normalize_origin(o) for o in options["origin"] or []]
        except ValidationError as exc:
            raise CommandError(exc.messages[0]) from None
        origins = origins or list(settings.UPLOADER_ORIGINS)
        servers = list(chosen)
        total = len(servers) * len(origins)
        if not total:
            self.stdout.write("No servers to check.")
            return
        checks: list[tuple[DicomWebServer, ConnectivityCheck]] = []
        with audit.acting_as(label="manage.py check_servers"):
            for server in servers:
                for number, origin in enumerate(origins):
                    self._progress(len(checks), total, f"{server.name} from {origin}")
                    # Capabilities do not depend on the origin: learnt once.
                    check = run_check(server, origin, relearn=number == 0)
                    checks.append((server, check))
        self._progress(total, total, "done")
        self.stderr.write("")
        self._summary(checks)
        failed = sum(1 for _, check in checks if not check.is_ok)
        if failed:
            raise CommandError(f"{failed} of {total} check(s) not ok.")
        self.stdout.write(self.style.SUCCESS(f"All {total} check(s) ok."))

    def _progress(self, done: int, total: int, what: str) -> None:
        width = 24
        filled = width * done // total
        bar = "#" * filled + "-" * (width - filled)
        # Progress goes to stderr, so the summary on stdout stays clean to parse.
        self.stderr.write(f"\r[{bar}] {done}/{total} {what[:60]:<60}", ending="")
        self.stderr.flush()

    def _summary(self, checks: list[tuple[DicomWebServer, ConnectivityCheck]]) -> None:
        rows = [("ID", "SERVER", "INSTITUTION", "ORIGIN", "OUTCOME")]
        for server, check in checks:
            rows.append(
                (
                    str(server.pk),
                    server.name,
                    server.institution.name,
                    check.origin,
                    check.outcome,
                )
            )
        widths = [min(40, max(len(row[i]) for row in rows)) for i in range(5)]
        for row in rows:
            line = "  ".join(
                cell[:40].ljust(w) for cell, w in zip(row, widths, strict=True)
            )
            self.stdout.write(line.rstrip())
        for server, check in checks:
            if check.is_ok:
                continue
            self.stdout.write(f"\n{server.name} ({check.origin}): {check.outcome}")
            for finding in check.shown_findings:
                self.stdout.write(f"  - {finding['message']}")
