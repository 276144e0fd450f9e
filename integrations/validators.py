"""The one place that normalises an email and validates a DICOMweb URL.

The model, the admin, the forms, the API and the importers all call these, so
the rules cannot drift apart.
"""

from __future__ import annotations

import ipaddress
import json
import re
import string
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, cast
from urllib.parse import quote, urlsplit

import idna
from django.core.exceptions import ValidationError
from email_validator import EmailNotValidError, validate_email
from email_validator.rfc_constants import (
    CASE_INSENSITIVE_MAILBOX_NAMES,
    DOT_ATOM_TEXT,
)

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


def email_identity(value: object) -> tuple[str, str]:
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
    return _plain_identity(raw) or _validated_identity(raw)


def _plain_identity(raw: str) -> tuple[str, str] | None:
    """What ``_validated_identity`` answers, for the common shape only: ASCII,
    one "@", a local part email-validator takes as it is (its own dot-atom
    rule, not a mailbox name it lowers) and a domain it has already taken
    whole and in ASCII; else None. Three quarters of email-validator's time
    goes to the domain, and a registry's users share a few hundred domains:
    an access question about an address a worker has not seen yet then costs
    a few µs instead of ~30 (tests/test_email_identity.py proves both give
    the same answer)."""
    if not raw.isascii() or len(raw) > MAX_EMAIL_LENGTH or raw.count("@") != 1:
        return None
    local, _, domain = raw.partition("@")
    if not DOT_ATOM_TEXT.match(local) or local.lower() in _MAILBOX_NAMES:
        return None
    known = _plain_domain(domain)
    if known is None or len(local) + 1 + len(known) > MAX_EMAIL_LENGTH:
        return None
    return f"{local}@{known}", f"{local.lower()}@{known}"


_MAILBOX_NAMES = frozenset(CASE_INSENSITIVE_MAILBOX_NAMES)
# A stand-in local part that email-validator takes as it is.
_PLAIN_LOCAL = "x"


@lru_cache(maxsize=4096)
def _plain_domain(domain: str) -> str | None:
    """The domain lowered, when email-validator takes it and normalises it to
    exactly that (ASCII, no IDNA label to decode, nothing dropped); else None."""
    try:
        result = validate_email(f"{_PLAIN_LOCAL}@{domain}", check_deliverability=False)
    except EmailNotValidError:
        return None
    plain = domain.lower()
    if result.domain != plain or result.ascii_domain != plain:
        return None
    return plain


def _validated_identity(raw: str) -> tuple[str, str]:
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


# --- DICOMweb URLs ----------------------------------------------------------
#
# A DICOMweb URL ends up in generated nginx, Apache and Caddy configurations, so
# the rule is narrow on purpose (DESIGN.md, "Validation everywhere"): http(s),
# a plain host name or IP literal, an optional port, and a path of letters,
# digits, ``-._~/``, ``%XX`` escapes and ``!&()*+,=:@``. Nothing else.

PATH_SAFE = frozenset(string.ascii_letters + string.digits + "-._~/!&()*+,=:@")
_HEX = frozenset(string.hexdigits)
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*):")
_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_HOST_CHARS = frozenset(string.ascii_letters + string.digits + ".-")
MAX_HOST_LENGTH = 253
_SHOWN_VALUE_LENGTH = 300
ALLOWED_PATH_TEXT = "letters, digits, -._~/, %XX escapes and !&()*+,=:@"


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


def describe_character(ch: str) -> str:
    """A character named safely for a message: “$”, “é” (U+00E9), or what it is
    and its code point when it would not print: "a line break (U+000A)"."""
    code = f"U+{ord(ch):04X}"
    if ch == " ":
        return f"a space ({code})"
    if not ch.isprintable():
        name = _CHARACTER_NAMES.get(ch)
        if name is None:
            name = {
                "Cs": "a lone surrogate",
                "Cf": "a format character",
                "Zl": "a line separator",
                "Zp": "a paragraph separator",
            }.get(unicodedata.category(ch), "a control character")
        return f"{name} ({code})"
    if ord(ch) > 127:
        return f"“{ch}” ({code})"
    return f"“{ch}”"


def printable(value: str, limit: int = _SHOWN_VALUE_LENGTH) -> str:
    """``value`` with every unprintable character written as <U+XXXX>, cut to
    ``limit`` characters: safe in a message, a log line or a comment."""
    shown = "".join(ch if ch.isprintable() else f"<U+{ord(ch):04X}>" for ch in value)
    return shown if len(shown) <= limit else shown[: limit - 1] + "…"


@dataclass(frozen=True)
class UrlParts:
    """A DICOMweb URL taken apart: each part already checked and normalised
    except the path, which is as given."""

    scheme: str  # "http" or "https"
    host: str  # "pacs.example.org", "10.0.0.5" or "[::1]" (ASCII, lower case)
    port: int | None
    path: str  # "" or "/dicom-web" (no trailing slash)

    @property
    def origin(self) -> str:
        port = f":{self.port}" if self.port is not None else ""
        return f"{self.scheme}://{self.host}{port}"

    def url(self, path: str | None = None) -> str:
        return self.origin + (self.path if path is None else path)


def _url_error(raw: str, reason: str) -> ValidationError:
    return ValidationError(
        "“%(value)s” is not a usable DICOMweb URL: %(reason)s",
        code="invalid_url",
        params={"value": printable(raw), "reason": reason},
    )


def split_dicomweb_url(value: Any) -> UrlParts:
    """Every part of the rule but the path's characters: scheme, host, port,
    no credentials, no query, no fragment. ValidationError naming the value
    and what is wrong. The fix-it configurations use this directly and
    percent-encode the path themselves."""
    raw = value.strip() if isinstance(value, str) else value
    if not isinstance(raw, str) or not raw:
        raise ValidationError("Enter a URL.", code="required")

    def invalid(reason: str) -> ValidationError:
        return _url_error(raw, reason)

    if len(raw) > MAX_URL_LENGTH:
        raise invalid(f"it is longer than {MAX_URL_LENGTH} characters.")
    scheme = _SCHEME.match(raw)
    if (
        scheme is None
        or scheme.group(1).lower() not in ("http", "https")
        or not raw[scheme.end() :].startswith("//")
    ):
        raise invalid("it must start with http:// or https://.")
    rest = raw[scheme.end() + 2 :]
    authority_end = len(rest)
    for mark in "/?#":
        found = rest.find(mark)
        if found != -1:
            authority_end = min(authority_end, found)
    authority, rest = rest[:authority_end], rest[authority_end:]
    path, hash_, fragment = rest.partition("#")
    path, question, query = path.partition("?")
    if hash_:
        raise invalid("it contains a #fragment; a DICOMweb URL has none.")
    if question:
        raise invalid(
            f"it contains a query (“?{printable(query, 60)}”); a DICOMweb URL "
            "has none: give the address that /studies is appended to."
        )
    if "@" in authority:
        raise invalid(
            "it contains a user name or password; credentials never go in the URL."
        )
    host, port = _split_host_port(authority, invalid)
    return UrlParts(
        scheme=scheme.group(1).lower(), host=host, port=port, path=path.rstrip("/")
    )


def _split_host_port(authority: str, invalid: Any) -> tuple[str, int | None]:
    port_text: str | None = None
    if authority.startswith("["):
        literal, bracket, after = authority[1:].partition("]")
        if not bracket:
            raise invalid("its IPv6 address has no closing “]”.")
        try:
            address = ipaddress.IPv6Address(literal)
            if address.scope_id is not None:
                raise ValueError("a zone id (%) has no place in a URL")
        except ValueError:
            raise invalid(
                f"“[{printable(literal, 60)}]” is not an IPv6 address."
            ) from None
        host = f"[{address.compressed}]"
        if after:
            if not after.startswith(":"):
                raise invalid(
                    f"{describe_character(after[0])} after the IPv6 address; "
                    "only :port may follow it."
                )
            port_text = after[1:]
    else:
        name, colon, after = authority.partition(":")
        if colon:
            port_text = after
        host = _hostname(name, invalid)
    port = None
    if port_text is not None:
        if not port_text.isascii() or not port_text.isdigit():
            raise invalid(
                f"the port “{printable(port_text, 20)}” is not a number from 1 to "
                "65535."
            )
        port = int(port_text)
        if not 1 <= port <= 65535:
            raise invalid(f"port {port} is out of range (1-65535).")
    return host, port


def _hostname(name: str, invalid: Any) -> str:
    """A DNS name in its ASCII (IDNA) form, lower case, or an IPv4 address."""
    if not name:
        raise invalid("it has no host name.")
    if not name.isascii():
        for ch in name:
            if ord(ch) <= 127 and ch not in _HOST_CHARS or not ch.isprintable():
                raise invalid(
                    f"the host name contains {describe_character(ch)}; a host "
                    "name holds only letters, digits, hyphens and dots."
                )
        try:
            name = idna.encode(name, uts46=True).decode("ascii")
        except (idna.IDNAError, UnicodeError, ValueError) as exc:
            raise invalid(
                f"the host name “{printable(name, 80)}” is not a valid "
                f"internationalised domain name ({printable(str(exc), 120)})."
            ) from None
    for ch in name:
        if ch not in _HOST_CHARS:
            raise invalid(
                f"the host name contains {describe_character(ch)}; a host name "
                "holds only letters, digits, hyphens and dots."
            )
    name = name.lower()
    labels = name.split(".")
    if labels[-1].isdigit() or all(label.isdigit() for label in labels):
        try:
            return str(ipaddress.IPv4Address(name))
        except ValueError:
            raise invalid(f"“{name}” is not an IPv4 address.") from None
    if len(name) > MAX_HOST_LENGTH:
        raise invalid(f"the host name is longer than {MAX_HOST_LENGTH} characters.")
    for label in labels:
        if not _LABEL.fullmatch(label):
            raise invalid(
                f"“{label}” is not a host name label (1-63 letters, digits or "
                "hyphens, not starting or ending with a hyphen)."
                if label
                else "the host name has an empty label (two dots, or a dot at an end)."
            )
        if label.startswith("xn--"):
            try:
                idna.decode(label)
            except (idna.IDNAError, UnicodeError, ValueError):
                raise invalid(
                    f"“{label}” is not a valid internationalised label."
                ) from None
    return name


def _is_escape(path: str, index: int) -> bool:
    escape = path[index + 1 : index + 3]
    return len(escape) == 2 and set(escape) <= _HEX


def path_problem(path: str) -> str | None:
    """Why a URL path breaks the rule (naming the first bad character), or
    None."""
    index = 0
    while index < len(path):
        ch = path[index]
        if ch == "%":
            if not _is_escape(path, index):
                return (
                    "the path contains “%” not followed by two hexadecimal "
                    "digits (write a literal % as %25)."
                )
            index += 3
            continue
        if ch not in PATH_SAFE:
            return (
                f"the path contains {describe_character(ch)}, which a DICOMweb "
                f"URL may not hold (allowed: {ALLOWED_PATH_TEXT})."
            )
        index += 1
    return None


def escape_path(path: str) -> str:
    """``path`` with every character outside the rule percent-encoded (UTF-8),
    and every ``%`` that is not an escape written as %25."""
    out = []
    index = 0
    while index < len(path):
        ch = path[index]
        if ch == "%" and _is_escape(path, index):
            out.append(path[index : index + 3])
            index += 3
            continue
        if ch in PATH_SAFE:
            out.append(ch)
        else:
            out.append(quote(ch, safe="", errors="surrogatepass"))
        index += 1
    return "".join(out)


def normalize_dicomweb_url(value: Any) -> str:
    """The one rule for a DICOMweb URL (see the comment above), as its
    normal form: lower-case scheme and host, the host in ASCII (IDNA), the
    trailing slash removed so that ``{url}/studies`` is well formed.
    ValidationError naming the value and the bad character otherwise."""
    parts = split_dicomweb_url(value)
    problem = path_problem(parts.path)
    if problem:
        raise _url_error(value.strip(), problem)
    return parts.url()


# A model field's validator: Django discards the return value, but the stubs
# type ``validators=`` as returning None. The same function object, so the
# migrations still name ``normalize_dicomweb_url``.
dicomweb_url_validator = cast("Callable[[Any], None]", normalize_dicomweb_url)


def dicomweb_url_problem(value: Any) -> str | None:
    """Why a stored URL breaks the rule (None when it is fine): for the system
    check and for refusing configurations of rows stored before the rule."""
    try:
        normalize_dicomweb_url(value)
    except ValidationError as exc:
        return exc.messages[0]
    return None


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
    return fold_emails(
        (number, item.strip())
        for number, line in enumerate(text.splitlines(), start=1)
        for item in _SEPARATORS.split(line)
        if item.strip()
    )


def fold_emails(entries: Iterable[tuple[int, Any]]) -> EmailList:
    """Normalise each ``(position, value)``, folding duplicates by identity:
    the addresses, first seen first, and every bad value with its position
    and message. The one loop behind pasted lists and bulk writes."""
    seen: set[str] = set()
    emails: list[str] = []
    errors: list[tuple[int, str, str]] = []
    duplicates = 0
    for position, raw in entries:
        try:
            email, key = email_identity(raw)
        except ValidationError as exc:
            errors.append((position, str(raw), exc.messages[0]))
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


# --- Pacsbin's proxy ---------------------------------------------------------
#
# A server whose CORS is met by Pacsbin's own proxy (cors_mode "dimse_proxy")
# carries the proxy's settings (DESIGN.md, "Pacsbin's proxy", **contract**):
#   {"mode": "dimse", "archive_ae_title", "archive_host", "archive_port",
#    "proxy_ae_title", "proxy_dimse_port"}
#   {"mode": "dicomweb", "forward_qido_url", "forward_wado_url"}
# ``normalize_pacsbin_proxy`` is the one rule for those settings; the model,
# the admin, the public form, the API, the import and the approval all reach
# it (through DicomWebServer.clean or the forms that compose the object).

PROXY_MODE_DIMSE = "dimse"
PROXY_MODE_DICOMWEB = "dicomweb"
PROXY_MODES = (PROXY_MODE_DIMSE, PROXY_MODE_DICOMWEB)
PROXY_KEYS = {
    PROXY_MODE_DIMSE: (
        "mode",
        "archive_ae_title",
        "archive_host",
        "archive_port",
        "proxy_ae_title",
        "proxy_dimse_port",
    ),
    PROXY_MODE_DICOMWEB: ("mode", "forward_qido_url", "forward_wado_url"),
}
MAX_AE_TITLE_LENGTH = 16


def _shown(value: Any, limit: int = 80) -> str:
    """A value of any JSON type as a message shows it."""
    if isinstance(value, str):
        return f"“{printable(value, limit)}”"
    try:
        text = json.dumps(value, ensure_ascii=True)
    except (TypeError, ValueError):
        text = repr(value)
    return printable(text, limit)


def normalize_ae_title(value: Any) -> str:
    """A DICOM application entity title: 1-16 characters of printable ASCII
    without a backslash, not all spaces. Surrounding spaces are not part of
    it (DICOM pads AE titles with spaces) and are removed."""
    if not isinstance(value, str):
        raise ValidationError(
            "%(value)s is not an AE title: give text such as PACS_SERVER.",
            code="invalid_ae_title",
            params={"value": _shown(value)},
        )
    title = value.strip(" ")
    if not title:
        raise ValidationError(
            "“%(value)s” is not an AE title: it is empty or only spaces."
            if value
            else "Enter an AE title (1-16 characters, such as PACS_SERVER).",
            code="invalid_ae_title" if value else "required",
            params={"value": printable(value, 40)},
        )
    for ch in title:
        if ch == "\\" or not " " <= ch <= "~":
            raise ValidationError(
                "“%(value)s” is not an AE title: it contains %(what)s (allowed: "
                "printable ASCII letters, digits, spaces and punctuation, no "
                "backslash).",
                code="invalid_ae_title",
                params={"value": printable(value, 40), "what": describe_character(ch)},
            )
    if len(title) > MAX_AE_TITLE_LENGTH:
        raise ValidationError(
            "“%(value)s” is not an AE title: it has %(length)s characters, at "
            "most 16 are allowed.",
            code="invalid_ae_title",
            params={"value": printable(value, 40), "length": len(title)},
        )
    return title


def normalize_host(value: Any) -> str:
    """A DNS name (stored in its ASCII/IDNA form, lower case) or an IP
    address (IPv6 without brackets), for a DIMSE peer. Private addresses are
    normal here: the registry never connects to them."""
    raw = value.strip() if isinstance(value, str) else value
    if not isinstance(raw, str) or not raw:
        if isinstance(raw, str):
            raise ValidationError(
                "Enter a host name or an IP address.", code="required"
            )
        raise ValidationError(
            "%(value)s is not a host name or IP address.",
            code="invalid_host",
            params={"value": _shown(value)},
        )

    def invalid(reason: str) -> ValidationError:
        return ValidationError(
            "“%(value)s” is not a host name or IP address: %(reason)s",
            code="invalid_host",
            params={"value": printable(raw, 80), "reason": reason},
        )

    literal = raw[1:-1] if raw.startswith("[") and raw.endswith("]") else raw
    if ":" in literal:
        try:
            address = ipaddress.IPv6Address(literal)
            if address.scope_id is not None:
                raise ValueError
        except ValueError:
            raise invalid(
                "it is not an IPv6 address (and a name has no “:”)."
            ) from None
        return address.compressed
    return _hostname(raw, invalid)


def normalize_port(value: Any) -> int:
    """A TCP port: a whole number from 1 to 65535 (a JSON number, or digits
    as a form or a CSV file gives them)."""
    number: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        text = value.strip()
        number = int(text) if len(text) <= 6 else 0
    if number is None or not 1 <= number <= 65535:
        raise ValidationError(
            "%(value)s is not a port: give a whole number from 1 to 65535.",
            code="invalid_port",
            params={"value": _shown(value)},
        )
    return number


def normalize_pacsbin_proxy(value: Any) -> dict[str, Any] | None:
    """The settings of Pacsbin's proxy in their normal form, or None.

    Raises ValidationError keyed by setting ("mode", "archive_port", ...,
    "__all__" for the object as a whole), each message naming the value."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ValidationError(
            {
                "__all__": ValidationError(
                    "%(value)s is not the proxy's settings: give an object with "
                    "a “mode” (“dimse” or “dicomweb”), or null.",
                    code="invalid",
                    params={"value": _shown(value)},
                )
            }
        )
    mode = value.get("mode")
    if mode not in PROXY_MODES:
        raise ValidationError(
            {
                "mode": ValidationError(
                    "%(value)s is not a mode of Pacsbin's proxy: use “dimse” (the "
                    "archive speaks only DIMSE) or “dicomweb” (it has DICOMweb).",
                    code="invalid" if "mode" in value else "required",
                    params={"value": _shown(mode)},
                )
            }
        )
    keys = PROXY_KEYS[mode]
    errors: dict[str, list[ValidationError]] = {}
    unknown = [key for key in value if key not in keys]
    if unknown:
        errors["__all__"] = [
            ValidationError(
                "%(keys)s %(verb)s not a setting of the %(mode)s mode (it has: "
                "%(known)s).",
                code="unknown_key",
                params={
                    "keys": ", ".join(_shown(key, 40) for key in unknown[:10]),
                    "verb": "is" if len(unknown) == 1 else "are",
                    "mode": mode,
                    "known": ", ".join(keys),
                },
            )
        ]
    rules: dict[str, Callable[[Any], Any]] = {
        "archive_ae_title": normalize_ae_title,
        "archive_host": normalize_host,
        "archive_port": normalize_port,
        "proxy_ae_title": normalize_ae_title,
        "proxy_dimse_port": normalize_port,
        "forward_qido_url": normalize_dicomweb_url,
        "forward_wado_url": normalize_dicomweb_url,
    }
    normal: dict[str, Any] = {"mode": mode}
    for key in keys[1:]:
        if key not in value or value[key] in (None, ""):
            errors[key] = [
                ValidationError(
                    "The %(mode)s mode needs %(key)s.",
                    code="required",
                    params={"mode": mode, "key": key},
                )
            ]
            continue
        try:
            normal[key] = rules[key](value[key])
        except ValidationError as exc:
            errors[key] = exc.error_list
    if errors:
        raise ValidationError(errors)
    return normal


def proxy_error_messages(exc: ValidationError) -> list[str]:
    """``normalize_pacsbin_proxy``'s errors as flat messages, each starting
    with the setting it is about: for a single JSON field (model, API)."""
    if not hasattr(exc, "error_dict"):
        return list(exc.messages)
    return [
        message if key == "__all__" else f"{key}: {message}"
        for key, errors in exc.error_dict.items()
        for message in ValidationError(errors).messages
    ]


def describe_pacsbin_proxy(settings: Any) -> str:
    """Proxy settings in words, for a reviewer or a summary: one line."""
    if settings is None:
        return "—"
    if not isinstance(settings, dict):
        return printable(str(settings), 200)
    if settings.get("mode") == PROXY_MODE_DIMSE:
        return printable(
            f"dimse: archive {settings.get('archive_ae_title')} at "
            f"{settings.get('archive_host')}, port {settings.get('archive_port')}; "
            f"proxy AE title {settings.get('proxy_ae_title')}, DIMSE port "
            f"{settings.get('proxy_dimse_port')}",
            300,
        )
    if settings.get("mode") == PROXY_MODE_DICOMWEB:
        return printable(
            f"dicomweb: forwards QIDO to {settings.get('forward_qido_url')}, WADO "
            f"to {settings.get('forward_wado_url')}",
            300,
        )
    return printable(json.dumps(settings, ensure_ascii=True), 300)


def load_signing_key(pem: str) -> Any:
    """The ES256 (EC P-256) private key of a PEM text; ValueError saying why
    not. A PEM pasted into one environment line with ``\\n`` escapes works."""
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    text = pem.strip()
    if "\n" not in text and "\\n" in text:
        text = text.replace("\\n", "\n")
    try:
        key = load_pem_private_key(text.encode(), password=None)
    except (ValueError, TypeError, UnicodeEncodeError):
        raise ValueError(
            "not a PEM private key without a password (expected "
            "'-----BEGIN PRIVATE KEY-----' or '-----BEGIN EC PRIVATE KEY-----')."
        ) from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(
        key.curve, ec.SECP256R1
    ):
        raise ValueError("not an EC P-256 key: ES256 tokens need one.")
    return key


def signing_key_problem(pem: str) -> str | None:
    """Why ``pem`` cannot sign edge tokens, or None (settings' start-up check)."""
    try:
        load_signing_key(pem)
    except ValueError as exc:
        return str(exc)
    return None
