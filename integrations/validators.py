"""The one place that normalises an email and validates a DICOMweb URL.

The model, the admin, the forms, the API and the importers all call these, so
the rules cannot drift apart.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from django.core.exceptions import ValidationError
from email_validator import EmailNotValidError, validate_email

MAX_URL_LENGTH = 2000
MAX_EMAIL_LENGTH = 254


def normalize_email(value: str) -> str:
    """The normalised form of an address, as email-validator returns it.

    Raises ValidationError naming the value when it is not an address. No DNS
    lookups: deliverability is not checked at save time.
    """
    return email_identity(value)[0]


def email_key(value: str) -> str:
    """The matching key of an address (identity, **contract**): the local part
    lowered with ``str.lower`` and the domain in IDNA ASCII form, lowered.

    Nothing else folds: ``straße.de`` (``xn--strae-oqa.de``) and
    ``strasse.de`` are different domains, and a local part ``ß`` is not
    ``ss`` (``str.casefold`` would make both the same user).
    Raises ValidationError naming the value when it is not an address.
    """
    return email_identity(value)[1]


def email_identity(value: str) -> tuple[str, str]:
    """``(normalised address, matching key)`` in one validation: the one
    function every stored email and every stored key comes from."""
    raw = value.strip() if isinstance(value, str) else value
    if not isinstance(raw, str) or not raw:
        raise ValidationError("Enter an email address.", code="required")
    return _identity(raw)


# The same few thousand users ask the access question again and again, and
# email-validator takes ~50 µs an address: remember the answers (a pure
# function; errors are not cached, they raise each time).
@lru_cache(maxsize=65_536)
def _identity(raw: str) -> tuple[str, str]:
    try:
        result = validate_email(raw, check_deliverability=False)
    except EmailNotValidError as exc:
        raise ValidationError(
            "“%(value)s” is not a valid email address: %(reason)s",
            code="invalid_email",
            params={"value": raw, "reason": str(exc)},
        ) from None
    if len(result.normalized) > MAX_EMAIL_LENGTH:
        raise ValidationError(
            "“%(value)s” is longer than %(max)s characters.",
            code="invalid_email",
            params={"value": raw, "max": MAX_EMAIL_LENGTH},
        )
    key = f"{result.local_part.lower()}@{result.ascii_domain.lower()}"
    if len(key) > MAX_EMAIL_LENGTH:  # an IDNA domain is longer than its Unicode
        raise ValidationError(
            "“%(value)s” is longer than %(max)s characters.",
            code="invalid_email",
            params={"value": raw, "max": MAX_EMAIL_LENGTH},
        )
    return result.normalized, key


def normalize_dicomweb_url(value: str) -> str:
    """An absolute http(s) URL with a host, no credentials, no fragment.

    The trailing slash is removed so that ``{url}/studies`` is well formed.
    """
    raw = value.strip() if isinstance(value, str) else value
    if not isinstance(raw, str) or not raw:
        raise ValidationError("Enter a URL.", code="required")

    def invalid(reason: str) -> ValidationError:
        return ValidationError(
            "“%(value)s” is not a usable DICOMweb URL: %(reason)s",
            code="invalid_url",
            params={"value": raw, "reason": reason},
        )

    if len(raw) > MAX_URL_LENGTH:
        raise invalid(f"it is longer than {MAX_URL_LENGTH} characters.")
    if re.search(r"\s", raw):
        raise invalid("it contains spaces.")
    try:
        parts = urlsplit(raw)
        port = parts.port
    except ValueError as exc:
        raise invalid(f"{exc}.") from None
    if parts.scheme.lower() not in ("http", "https"):
        raise invalid("it must start with http:// or https://.")
    if not parts.hostname:
        raise invalid("it has no host name.")
    if parts.username is not None or parts.password is not None:
        raise invalid(
            "it contains a user name or password; credentials never go in the URL."
        )
    if parts.fragment or raw.endswith("#"):
        raise invalid("it contains a #fragment.")
    if port == 0:
        raise invalid("port 0 is not a port.")
    path = parts.path.rstrip("/")
    return urlunsplit(
        (parts.scheme.lower(), parts.netloc.lower(), path, parts.query, "")
    )


MAX_ORIGIN_LENGTH = 200


def normalize_origin(value: Any) -> str:
    """``scheme://host[:port]``, lower case; ValidationError naming the value."""
    raw = value.strip() if isinstance(value, str) else value
    if not isinstance(raw, str) or not raw:
        raise ValidationError("Enter an origin such as https://pacsbin.com.")
    try:
        parts = urlsplit(raw)
        parts.port  # noqa: B018 -- raises ValueError on a bad port
    except ValueError:
        parts = None
    if (
        parts is None
        or len(raw) > MAX_ORIGIN_LENGTH
        or parts.scheme.lower() not in ("http", "https")
        or not parts.hostname
        or parts.path not in ("", "/")
        or parts.query
        or parts.fragment
        or parts.username is not None
        or parts.password is not None
    ):
        raise ValidationError(
            "“%(value)s” is not an origin like https://pacsbin.com (scheme and "
            "host, no path).",
            code="invalid_origin",
            params={"value": raw},
        )
    return f"{parts.scheme.lower()}://{parts.netloc.lower()}"


@dataclass(frozen=True)
class EmailList:
    """Emails parsed from pasted text: the normalised addresses, first seen
    first, and every bad line with its number and value."""

    emails: list[str]
    errors: list[tuple[int, str, str]]  # (line number, value, message)
    duplicates: int

    def error_messages(self) -> list[str]:
        return [f"Line {line}: {message}" for line, _value, message in self.errors]


_SEPARATORS = re.compile(r"[,;]")


def parse_email_list(text: str) -> EmailList:
    """Parse pasted emails: one per line, or separated by commas or semicolons.

    Duplicates (ignoring case) are folded; empty entries are skipped. Every bad
    entry is reported with its line number; nothing is dropped silently.
    """
    seen: set[str] = set()
    emails: list[str] = []
    errors: list[tuple[int, str, str]] = []
    duplicates = 0
    for number, line in enumerate(text.splitlines(), start=1):
        for item in _SEPARATORS.split(line):
            item = item.strip()
            if not item:
                continue
            try:
                email, key = email_identity(item)
            except ValidationError as exc:
                errors.append((number, item, exc.messages[0]))
                continue
            if key in seen:
                duplicates += 1
                continue
            seen.add(key)
            emails.append(email)
    return EmailList(emails=emails, errors=errors, duplicates=duplicates)


def count_email_entries(text: str) -> int:
    """How many entries ``parse_email_list`` would look at, without validating
    them: lets a caller refuse an oversized paste before the costly part."""
    return sum(
        1
        for line in text.splitlines()
        for item in _SEPARATORS.split(line)
        if item.strip()
    )
