"""Export the whole registry as JSON, or the approved users as CSV."""

from __future__ import annotations

from typing import IO, Any, cast

from django.core.management.base import BaseCommand, CommandError, CommandParser

from integrations import transfer


class Command(BaseCommand):
    help = (
        "Write the registry to FILE (or standard output): JSON with every "
        "institution, server and approved user (import_registry reads it back), "
        "or --format csv for the approved users only."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--format", choices=["json", "csv"], default="json")
        parser.add_argument(
            "-o", "--output", default="-", help="file to write; - for stdout"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        def progress(rows: int) -> None:
            self.stderr.write(f"Exported {rows:,} rows…")

        to_stdout = options["output"] == "-"
        stream: IO[str]
        try:
            if to_stdout:
                # The wrapper's own stream: OutputWrapper would add a newline
                # per write (``_out`` is private, so the stubs do not type it).
                stream = cast("IO[str]", self.stdout._out)
            else:
                stream = open(options["output"], "w", encoding="utf-8", newline="")  # noqa: SIM115
        except OSError as exc:
            raise CommandError(f"{options['output']}: {exc.strerror}.") from None
        try:
            if options["format"] == "csv":
                count = transfer.export_csv(stream, progress)
                summary = f"{count:,} approved user(s)"
            else:
                counts = transfer.export_json(stream, progress)
                summary = ", ".join(f"{n:,} {name}" for name, n in counts.items())
        finally:
            if not to_stdout:
                stream.close()
        self.stderr.write(f"Exported {summary}.")
