"""Strict readers for settings taken from the environment.

A malformed value stops start-up with a message that names the variable, so an
operator never runs with a setting silently read as something else.
"""

from __future__ import annotations

import builtins
import os
from collections.abc import Mapping

from django.core.exceptions import ImproperlyConfigured

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


class Env:
    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        self.environ = os.environ if environ is None else environ

    def str(self, name: str, default: str = "") -> str:
        return self.environ.get(name, default).strip()

    def bool(self, name: builtins.str, default: bool = False) -> bool:
        if name not in self.environ:
            return default
        value = self.environ[name].strip().lower()
        if value in _TRUE:
            return True
        if value in _FALSE:
            return False
        raise ImproperlyConfigured(
            f"{name}={self.environ[name]!r} is not a boolean: use 1 or 0."
        )

    def int(self, name: builtins.str, default: int, minimum: int = 0) -> int:
        raw = self.str(name)
        if not raw:
            return default
        try:
            value = int(raw)
        except ValueError:
            raise ImproperlyConfigured(
                f"{name}={raw!r} is not a whole number."
            ) from None
        if value < minimum:
            raise ImproperlyConfigured(f"{name}={raw!r} must be at least {minimum}.")
        return value

    def number(self, name: builtins.str, default: float, minimum: float = 0.0) -> float:
        """A decimal number such as ``15`` or ``0.05`` (no exponent, no NaN)."""
        raw = self.str(name)
        if not raw:
            return default
        digits = raw.replace(".", "", 1)
        if not (digits.isascii() and digits.isdigit()):
            raise ImproperlyConfigured(
                f"{name}={raw!r} is not a number: use e.g. 15 or 0.5."
            )
        value = float(raw)
        if value < minimum:
            raise ImproperlyConfigured(f"{name}={raw!r} must be at least {minimum:g}.")
        return value

    def list(
        self, name: builtins.str, default: builtins.str = ""
    ) -> builtins.list[builtins.str]:
        raw = self.environ.get(name, default)
        return [item.strip() for item in raw.split(",") if item.strip()]

    def secret(self, name: builtins.str) -> builtins.str:
        """A secret from NAME, or from the file named by NAME_FILE (for containers)."""
        file_name = self.str(f"{name}_FILE")
        if file_name:
            try:
                with open(file_name, encoding="utf-8") as handle:
                    return handle.read().strip()
            except OSError as exc:
                raise ImproperlyConfigured(
                    f"{name}_FILE={file_name!r} cannot be read: {exc.strerror}."
                ) from None
        return self.str(name)
