"""Makes sure the local demo has an admin login, and prints it.

For ``make run`` only: the password is random, kept in a git-ignored file
beside the SQLite database so the same login keeps working.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

USERNAME = "admin"


class Command(BaseCommand):
    help = "Create or refresh the local demo admin account and print its login."

    def handle(self, *args: Any, **options: Any) -> None:
        if not settings.DEBUG:
            raise CommandError(
                "demo_admin is for the local demo (DJANGO_DEBUG=1) only."
            )
        store = Path(settings.BASE_DIR) / ".demo-admin-password"
        User = get_user_model()
        user = User.objects.filter(username=USERNAME).first()
        password = store.read_text().strip() if store.exists() else ""
        if user is None or not password or not user.check_password(password):
            password = secrets.token_urlsafe(12)
            if user is None:
                user = User.objects.create_superuser(
                    USERNAME, "admin@localhost", password
                )
            else:
                user.set_password(password)
                user.is_active = user.is_staff = user.is_superuser = True
                user.save()
            store.write_text(password + "\n")
            store.chmod(0o600)
        self.stdout.write(f"Admin login: {USERNAME} / {password}")
