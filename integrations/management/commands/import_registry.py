"""Import a registry export: JSON into an empty database, or approved users
from CSV into existing servers. All or nothing, audited."""

from __future__ import annotations

import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from integrations import audit, transfer


class Command(BaseCommand):
    help = (
        "Read FILE ('-' for standard input) written by export_registry: JSON "
        "loads the whole registry into an empty database keeping ids and "
        "timestamps; --format csv approves the listed emails for existing "
        "servers. Any bad row is reported and nothing is written."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file")
        parser.add_argument("--format", choices=["json", "csv"], default="json")

    def handle(self, *args: Any, **options: Any) -> None:
        name = options["file"]
        try:
            stream = (
                sys.stdin if name == "-" else open(name, encoding="utf-8", newline="")  # noqa: SIM115
            )
        except OSError as exc:
            raise CommandError(f"{name}: {exc.strerror}.") from None
        try:
            with audit.acting_as(label="command:import_registry"):
                if options["format"] == "csv":
                    results = transfer.import_csv(stream)
                    added = sum(len(result.added) for result in results.values())
                    existing = sum(len(r.existing) for r in results.values())
                    summary = (
                        f"{added:,} approval(s) added to {len(results):,} server(s), "
                        f"{existing:,} already there"
                    )
                else:
                    done = transfer.import_json(stream)
                    summary = (
                        f"{done.institutions:,} institution(s), {done.servers:,} "
                        f"server(s), {done.approved_users:,} approved user(s)"
                    )
        except transfer.TransferError as exc:
            raise CommandError(f"{name}: nothing was imported.\n{exc}") from None
        except UnicodeDecodeError:
            raise CommandError(f"{name}: not UTF-8 text.") from None
        finally:
            if stream is not sys.stdin:
                stream.close()
        self.stdout.write(f"Imported {summary}.")
