"""Approve many emails for one server from a file: all or nothing, audited."""

from __future__ import annotations

import csv
import io
import sys
from collections.abc import Iterator
from typing import Any, TextIO

from django.core.management.base import (
    BaseCommand,
    CommandError,
    CommandParser,
    OutputWrapper,
)
from django.db import transaction

from integrations import audit, registry
from integrations.models import DicomWebServer
from integrations.transfer import csv_value

# Writes go in chunks so progress can be shown; one outer transaction keeps the
# whole import all or nothing.
WRITE_CHUNK = 10_000


def read_email_lines(stream: TextIO) -> list[tuple[int, str]]:
    """(line number, value) for every non-empty entry.

    A CSV whose header has an ``email`` column is read by that column; anything
    else is one address per line.
    """
    text = stream.read()
    if text.startswith("\ufeff"):
        text = text[1:]
    lines = text.splitlines()
    if not lines:
        return []
    header = next(csv.reader([lines[0]]), [])
    columns = [name.strip().casefold() for name in header]
    if "email" in columns and (len(columns) > 1 or columns == ["email"]):
        column = columns.index("email")
        entries = []
        reader = csv.reader(io.StringIO(text))
        next(reader)
        for row in reader:
            # Undo the export's formula guard (transfer.csv_cell).
            value = csv_value(row[column]).strip() if len(row) > column else ""
            if value:
                entries.append((reader.line_num, value))
        return entries
    return [
        (number, line.strip())
        for number, line in enumerate(lines, start=1)
        if line.strip()
    ]


class Progress:
    """One line rewritten in place on a terminal; a line per tenth otherwise."""

    def __init__(self, out: OutputWrapper, label: str, total: int) -> None:
        self.out, self.label, self.total = out, label, total
        self.tty = out.isatty()
        self.shown = -1

    def update(self, done: int) -> None:
        tenth = done * 10 // self.total if self.total else 10
        if self.tty:
            end = "\n" if done >= self.total else ""
            self.out.write(f"\r{self.label}: {done:,}/{self.total:,}", ending=end)
        elif tenth != self.shown:
            self.out.write(f"{self.label}: {done:,}/{self.total:,}")
        self.shown = tenth
        self.out.flush()


class Command(BaseCommand):
    help = (
        "Approve the emails in FILE for one server. FILE is a CSV with an "
        "'email' column or one address per line; '-' reads standard input. Any "
        "bad line is reported by number and nothing is written."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("server_id", type=int)
        parser.add_argument("file", help="path, or - for standard input")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            server = DicomWebServer.objects.get(pk=options["server_id"])
        except DicomWebServer.DoesNotExist:
            raise CommandError(f"No server with id {options['server_id']}.") from None
        entries = self.read(options["file"])
        if not entries:
            raise CommandError(f"{options['file']}: no emails found.")
        checking = Progress(self.stderr, "Checking", len(entries))

        def values() -> Iterator[str]:
            for done, (_line, value) in enumerate(entries, start=1):
                if done % 5000 == 0 or done == len(entries):
                    checking.update(done)
                yield value

        try:
            emails = registry.normalise_all(values())
        except registry.BulkEmailError as exc:
            lines = [
                f"Line {entries[position - 1][0]}: {message}"
                for position, _value, message in exc.errors
            ]
            raise CommandError(
                f"{len(lines)} bad line(s), nothing was written:\n" + "\n".join(lines)
            ) from None
        progress = Progress(self.stderr, "Writing", len(emails))
        result = registry.BulkAddResult()
        label = f"command:import_approved_users {options['file']}"
        with audit.acting_as(label=label[:200]), transaction.atomic():
            done = 0
            for chunk in registry.chunks(emails, WRITE_CHUNK):
                part = registry.add_normalised_users(server, chunk)
                result.added.extend(part.added)
                result.existing.extend(part.existing)
                done += len(chunk)
                progress.update(done)
        self.stdout.write(
            f"Server {server.pk} “{server.name}”: {len(result.added):,} added, "
            f"{len(result.existing):,} already approved, "
            f"{len(entries) - len(emails):,} duplicate line(s) folded."
        )

    def read(self, name: str) -> list[tuple[int, str]]:
        if name == "-":
            return read_email_lines(sys.stdin)
        try:
            with open(name, encoding="utf-8", newline="") as stream:
                return read_email_lines(stream)
        except OSError as exc:
            raise CommandError(f"{name}: {exc.strerror}.") from None
        except UnicodeDecodeError:
            raise CommandError(f"{name}: not UTF-8 text.") from None
