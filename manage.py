#!/usr/bin/env python
"""Django's command-line utility for administrative tasks.

In a checkout where ``make run`` made the demo, ``python manage.py …`` works as
the README writes it: run by an interpreter without Django, it re-runs itself
with the checkout's ``.venv``; and the demo's settings (``.demo.env``, written
by ``make run``, git-ignored) fill in what the environment does not set.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
VENV_PYTHON = HERE / ".venv" / "bin" / "python"
DEMO_ENV = HERE / ".demo.env"


def _use_checkout_venv() -> None:
    try:
        import django  # noqa: F401
    except ImportError:
        running = Path(sys.executable).absolute()
        if VENV_PYTHON.exists() and running != VENV_PYTHON.absolute():
            os.execv(str(VENV_PYTHON), [str(VENV_PYTHON), *sys.argv])
        raise


def _demo_settings() -> None:
    if not DEMO_ENV.exists():
        return
    for line in DEMO_ENV.read_text(encoding="utf-8").splitlines():
        name, sep, value = line.strip().partition("=")
        if sep and name and not name.startswith("#"):
            os.environ.setdefault(name.strip(), value.strip())


def main() -> None:
    _use_checkout_venv()
    _demo_settings()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "pacsbin_integrations.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
