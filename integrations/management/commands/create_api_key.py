"""Create an API key; its raw value is printed alone on the last line."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.contrib.auth import get_user_model
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
        parser.add_argument(
            "--created-by",
            metavar="USERNAME",
            default=None,
            help="The staffer answerable for the key, named with it in the "
            "history of its changes; they must hold every permission the scope "
            "grants. Default: none (an operator at the shell).",
        )

    def handle(self, *args: Any, name: str, scope: str, **options: Any) -> None:
        days = options["expires_in_days"]
        if days is not None and days < 1:
            raise CommandError("--expires-in-days must be at least 1.")
        expires_at = timezone.now() + timedelta(days=days) if days else None
        creator = self._user(options["created_by"])
        try:
            key, raw = ApiKey.objects.create_key(
                name, scope, expires_at=expires_at, created_by=creator
            )
        except ValidationError as exc:
            raise CommandError("; ".join(exc.messages)) from None
        self.stdout.write(
            f"Created API key “{key.name}” (scope {key.scope}). Copy it now: it "
            "is not stored and will not be shown again."
        )
        self.stdout.write(raw)

    @staticmethod
    def _user(username: str | None) -> Any:
        if username is None:
            return None
        model = get_user_model()
        try:
            return model._default_manager.get_by_natural_key(username)
        except model.DoesNotExist:
            raise CommandError(f"--created-by: no user “{username}”.") from None
