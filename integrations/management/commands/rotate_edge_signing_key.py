"""Replace the embedded key that signs edge tokens."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from integrations.edge import keys


class Command(BaseCommand):
    help = (
        "Replace the embedded key that signs edge tokens. New tokens use the "
        "new key within 30 seconds in every worker; the old public key stays "
        "in /api/v1/edge/jwks.json until its last token has expired."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            new_kid, old_kid = keys.rotate()
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        minutes = keys.retention().total_seconds() / 60
        if old_kid:
            self.stdout.write(
                f"Retired {old_kid} (published for {minutes:.0f} more minutes)."
            )
        self.stdout.write(f"New signing key: {new_kid}")
