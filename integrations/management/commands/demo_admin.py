"""Makes sure the local demo has an admin login, and prints it.

For ``make run`` only: the password is random, kept in a git-ignored file
beside the SQLite database so the same login keeps working.
"""

from __future__ import annotations

import secrets
import socket
import time
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

USERNAME = "admin"


class Command(BaseCommand):
    help = "Create or refresh the local demo admin account and print its login."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument(
            "--wait-for",
            metavar="HOST:PORT",
            help="print the login once something listens there (the demo server), "
            "so it comes after the server's own start-up lines",
        )
        parser.add_argument(
            "--framed", action="store_true", help="print the login in a box"
        )

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
        address = options.get("wait_for")
        if address and not _wait_for(address):
            raise CommandError(f"Nothing listened on {address} within a minute.")
        lines = [f"Admin login: {USERNAME} / {password}"]
        if address:
            lines.insert(0, f"Pacsbin Integrations demo: http://{address}/admin/")
            lines.append("Ctrl-C stops the demo.")
        if options.get("framed"):
            width = max(len(line) for line in lines)
            rule = "+" + "-" * (width + 2) + "+"
            lines = [rule, *(f"| {line.ljust(width)} |" for line in lines), rule]
        self.stdout.write("\n".join(lines))


def _wait_for(address: str, seconds: float = 60.0) -> bool:
    host, _, port = address.rpartition(":")
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, int(port)), timeout=1):
                return True
        except OSError:
            time.sleep(0.2)
    return False
