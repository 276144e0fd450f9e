"""Delete onboarding requests whose contact never confirmed their address."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from integrations.onboarding.lifecycle import purge_expired_requests


class Command(BaseCommand):
    help = (
        "Delete onboarding requests not confirmed within ONBOARDING_CONFIRM_HOURS "
        "of being sent. They are already left out of the review queue; this "
        "removes what strangers typed. Safe to run from cron at any interval."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="List what would be deleted, delete nothing.",
        )

    def handle(self, *args: Any, dry_run: bool, **options: Any) -> None:
        references = purge_expired_requests(dry_run=dry_run)
        for reference in references:
            self.stdout.write(reference)
        verb = "would delete" if dry_run else "deleted"
        self.stdout.write(
            f"{verb} {len(references)} request(s) not confirmed within "
            f"{settings.ONBOARDING_CONFIRM_HOURS} hours."
        )
