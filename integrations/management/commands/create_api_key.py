"""Create an API key; its raw value is printed alone on the last line."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from integrations.models import ApiKey


class Command(BaseCommand):
    help = (
        "Create an API key for a program. The key is printed once, alone on "
        "the last line (only its hash is stored)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name", help="Who uses it, e.g. uploader-production.")
        parser.add_argument(
            "--scope",
            required=True,
            choices=ApiKey.Scope.values,
            help="access: may ask the access question; manage: may also change "
            "the registry.",
        )
        parser.add_argument(
            "--expires-in-days",
            type=int,
            default=None,
            help="Expire after this many days (default: never).",
        )

    def handle(self, *args: Any, name: str, scope: str, **options: Any) -> None:
        days = options["expires_in_days"]
        if days is not None and days < 1:
            raise CommandError("--expires-in-days must be at least 1.")
        expires_at = timezone.now() + timedelta(days=days) if days else None
        try:
            key, raw = ApiKey.objects.create_key(name, scope, expires_at=expires_at)
        except ValidationError as exc:
            raise CommandError("; ".join(exc.messages)) from None
        self.stdout.write(
            f"Created API key “{key.name}” (scope {key.scope}). Copy it now: it "
            "is not stored and will not be shown again."
        )
        self.stdout.write(raw)
