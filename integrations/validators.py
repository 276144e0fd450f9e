"""The one place that normalises an email and validates a DICOMweb URL.

The model, the admin, the forms, the API and the importers all call these, so
the rules cannot drift apart.
"""

from __future__ import annotations

import re
import unicodedata
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
    raw = value.strip() if isinstance(value, str) else value
    if not isinstance(raw, str) or not raw:
        raise ValidationError("Enter an email address.", code="required")
    return _normalized(raw)


# The same few thousand users ask the access question again and again, and
# email-validator takes ~50 µs an address: remember the answers (a pure
# function; errors are not cached, they raise each time).
@lru_cache(maxsize=65_536)
def _normalized(raw: str) -> str:
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
    return result.normalized


def email_key(value: str) -> str:
    """The case-insensitive matching key of an already normalised address."""
    return value.casefold()


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
                email = normalize_email(item)
            except ValidationError as exc:
                errors.append((number, item, exc.messages[0]))
                continue
            key = email_key(email)
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


# Characters that end a line somewhere (mail, logs, CSV) or are not text at
# all: every C0/C1 control (CR, LF, tab, NUL, NEL U+0085...), the Unicode line
# and paragraph separators, and lone surrogates.
_NOT_ONE_LINE = {"Cc", "Zl", "Zp", "Cs"}
_CHARACTER_NAMES = {
    "\r": "a carriage return",
    "\n": "a line break",
    "\t": "a tab",
    "\x00": "a NUL character",
    "\x85": "a next-line character",
    "\u2028": "a line separator",
    "\u2029": "a paragraph separator",
}


def describe_character(char: str) -> str:
    """A character as a message names it: what it is and its code point."""
    name = _CHARACTER_NAMES.get(char)
    if name is None:
        category = unicodedata.category(char)
        name = "a lone surrogate" if category == "Cs" else "a control character"
    return f"{name} (U+{ord(char):04X})"


def validate_single_line(value: Any) -> None:
    """Refuse a name that would not stay on one line: it goes into email
    headers and body lines, where a line break forges new lines."""
    if not isinstance(value, str):
        return
    bad = [c for c in dict.fromkeys(value) if unicodedata.category(c) in _NOT_ONE_LINE]
    if bad:
        raise ValidationError(
            "This must fit on one line; it contains %(what)s.",
            code="not_single_line",
            params={"what": ", ".join(describe_character(c) for c in bad)},
        )


def one_line(value: Any) -> str:
    """``value`` as text that cannot break a line: anything
    ``validate_single_line`` refuses becomes a space, runs of spaces one."""
    text = "" if value is None else str(value)
    return " ".join(
        "".join(
            " " if unicodedata.category(c) in _NOT_ONE_LINE else c for c in text
        ).split()
    )
