"""Export and import of the whole registry (JSON) and of approved users (CSV).

JSON keeps ids and timestamps, so a round trip into an empty database gives
identical data. Rows are streamed out, so a registry of a million approved
users exports in constant memory.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import IO, Any

from django.core.exceptions import ValidationError
from django.core.management.color import no_style
from django.db import connection, models, transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from simple_history.utils import bulk_create_with_history

from integrations import audit, registry
from integrations.edge import decisions
from integrations.inputs import escaped, parse_id
from integrations.models import (
    INSTITUTION_NAME_UNIQUE,
    SERVER_NAME_UNIQUE,
    ApprovedUser,
    DicomWebServer,
    Institution,
    duplicate_error,
)
from integrations.validators import email_identity, normalize_email

FORMAT = "pacsbin-integrations-registry"
VERSION = 1
INSTITUTION_FIELDS = [
    "id",
    "name",
    "contact_name",
    "contact_email",
    "notes",
    "created_at",
    "updated_at",
]
SERVER_FIELDS = [
    "id",
    "institution_id",
    *DicomWebServer.EDITABLE_FIELDS,
    # The edge key's hash (never the key): a restored registry keeps its
    # edges working.
    "edge_key_hash",
    "edge_key_created_at",
    "created_at",
    "updated_at",
]
APPROVED_USER_FIELDS = ["id", "server_id", "email", "created_at", "expires_at"]
# Fields an export made before they existed lacks, and their value then.
SERVER_FIELDS_ADDED = {
    "pacsbin_proxy": None,
    "edge_enforced": False,
    "edge_key_hash": "",
    "edge_key_created_at": None,
}
APPROVED_USER_FIELDS_ADDED = {"expires_at": None}
CSV_COLUMNS = ["server_id", "institution", "server", "email", "created_at"]
STREAM_CHUNK = 10_000

# A spreadsheet runs a cell starting with one of these as a formula (CSV
# injection: "=HYPERLINK(...)" in a server name phones home when staff open
# the export). Such a cell is written with a leading apostrophe, which
# spreadsheets take as "text" and hide; a cell that itself starts with an
# apostrophe gets one too, so the importer drops exactly one from any cell that
# has one and every value comes back as it was.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: object) -> str:
    text = str(value)
    return "'" + text if text.startswith((*FORMULA_STARTS, "'")) else text


def csv_value(cell: str) -> str:
    """The value ``csv_cell`` wrote. Only an apostrophe that ``csv_cell`` could
    have added is dropped, so a hand-written ``'quoted@example.org`` stays."""
    guarded = cell.startswith("'") and cell[1:2] in (*FORMULA_STARTS, "'")
    return cell[1:] if guarded else cell


Progress = Callable[[int], None]


def _jsonable(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def _rows(model: type[models.Model], fields: list[str]) -> Iterator[dict[str, Any]]:
    for values in (
        model._default_manager.order_by("pk")
        .values_list(*fields)
        .iterator(chunk_size=STREAM_CHUNK)
    ):
        yield {
            name: _jsonable(value) for name, value in zip(fields, values, strict=True)
        }


def export_json(out: IO[str], progress: Progress | None = None) -> dict[str, int]:
    """Write the whole registry as one JSON document; answers the row counts.

    Written row by row (one row per line) rather than built in memory.
    """
    counts = {}
    out.write(f'{{"format": "{FORMAT}", "version": {VERSION}')
    sections = [
        ("institutions", Institution, INSTITUTION_FIELDS),
        ("servers", DicomWebServer, SERVER_FIELDS),
        ("approved_users", ApprovedUser, APPROVED_USER_FIELDS),
    ]
    with transaction.atomic():  # one consistent snapshot on PostgreSQL
        for name, model, fields in sections:
            out.write(f',\n"{name}": [')
            count = 0
            for row in _rows(model, fields):
                out.write(",\n" if count else "\n")
                out.write(json.dumps(row, ensure_ascii=False, sort_keys=True))
                count += 1
                if progress and count % STREAM_CHUNK == 0:
                    progress(count)
            out.write("\n]")
            counts[name] = count
    out.write("}\n")
    return counts


def export_csv(out: IO[str], progress: Progress | None = None) -> int:
    """Write every approved user as CSV (one row per server and email)."""
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)  # constant, nothing to neutralise
    rows = (
        ApprovedUser.objects.order_by("server_id", "email_key")
        .values_list(
            "server_id",
            "server__institution__name",
            "server__name",
            "email",
            "created_at",
        )
        .iterator(chunk_size=STREAM_CHUNK)
    )
    count = 0
    for server_id, institution, server, email, created_at in rows:
        writer.writerow(
            [
                csv_cell(cell)
                for cell in (
                    server_id,
                    institution,
                    server,
                    email,
                    created_at.isoformat(),
                )
            ]
        )
        count += 1
        if progress and count % STREAM_CHUNK == 0:
            progress(count)
    return count


class TransferError(ValueError):
    """The file cannot be imported; nothing was written."""


@contextmanager
def _keeping_timestamps(*models_: type[models.Model]) -> Iterator[None]:
    """Let bulk inserts keep the exported created_at/updated_at values instead
    of stamping the time of the import (auto_now fields overwrite them)."""
    saved: list[tuple[models.DateField | models.TimeField, bool, bool]] = []
    for model in models_:
        for field in model._meta.concrete_fields:
            # auto_now lives on DateField (and DateTimeField) and TimeField.
            if isinstance(field, models.DateField | models.TimeField) and (
                field.auto_now or field.auto_now_add
            ):
                saved.append((field, field.auto_now, field.auto_now_add))
                field.auto_now = field.auto_now_add = False
    try:
        yield
    finally:
        for field, auto_now, auto_now_add in saved:
            field.auto_now, field.auto_now_add = auto_now, auto_now_add


_NULLABLE_TIMES = ("expires_at", "edge_key_created_at")
_KEY_HASH = re.compile(r"([0-9a-f]{64})?")


def _parse_rows(
    document: dict[str, Any],
    name: str,
    fields: list[str],
    added: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    rows = document.get(name)
    if not isinstance(rows, list):
        raise TransferError(f"“{name}” is missing or not a list.")
    parsed = []
    for number, row in enumerate(rows, start=1):
        if isinstance(row, dict) and added:
            row = {**added, **row}
        if not isinstance(row, dict) or set(row) != set(fields):
            raise TransferError(
                f"{name} #{number}: expected exactly the fields {', '.join(fields)}."
            )
        row = dict(row)
        for key in ("id", "institution_id", "server_id"):
            if key in row and (type(row[key]) is not int or row[key] < 1):
                raise TransferError(f"{name} #{number}: bad {key} {row[key]!r}.")
        for key in ("created_at", "updated_at", *_NULLABLE_TIMES):
            if key in row and not (key in _NULLABLE_TIMES and row[key] is None):
                when = parse_datetime(str(row[key]))
                if when is None:
                    raise TransferError(f"{name} #{number}: bad {key} {row[key]!r}.")
                row[key] = when
        parsed.append(row)
    return parsed


@dataclass(frozen=True)
class ImportResult:
    institutions: int
    servers: int
    approved_users: int


def import_json(stream: IO[str]) -> ImportResult:
    """Load an export into an empty registry, keeping ids and timestamps.

    Every row is checked with the same rules as the admin (URLs, emails,
    uniqueness) before anything is written; any problem raises TransferError
    listing every bad row, and nothing is written.
    """
    try:
        document = json.load(stream)
    except json.JSONDecodeError as exc:
        raise TransferError(f"Not JSON: {exc}.") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise TransferError(f"Not a registry export (format “{FORMAT}”).")
    if document.get("version") != VERSION:
        raise TransferError(f"Unsupported version {document.get('version')!r}.")
    institutions = [
        Institution(**row)
        for row in _parse_rows(document, "institutions", INSTITUTION_FIELDS)
    ]
    servers = [
        DicomWebServer(**row)
        for row in _parse_rows(
            document, "servers", SERVER_FIELDS, added=SERVER_FIELDS_ADDED
        )
    ]
    errors = _check_institutions(institutions) + _check_servers(
        servers, {institution.pk for institution in institutions}
    )
    users, user_errors = _build_approved_users(
        _parse_rows(
            document,
            "approved_users",
            APPROVED_USER_FIELDS,
            added=APPROVED_USER_FIELDS_ADDED,
        ),
        {server.pk for server in servers},
    )
    errors += user_errors
    if errors:
        raise TransferError("\n".join(errors))
    with transaction.atomic():
        if (
            Institution.objects.exists()
            or DicomWebServer.objects.exists()
            or ApprovedUser.objects.exists()
        ):
            raise TransferError(
                "The registry is not empty: import_registry loads an export into "
                "an empty database (use import_approved_users to add emails)."
            )
        history = audit.bulk_history_attrs()
        now = timezone.now()
        with _keeping_timestamps(Institution, DicomWebServer, ApprovedUser):
            for model, rows in (
                (Institution, institutions),
                (DicomWebServer, servers),
                (ApprovedUser, users),
            ):
                if rows:
                    bulk_create_with_history(
                        rows,
                        model,
                        batch_size=registry.BULK_BATCH_SIZE,
                        default_date=now,
                        **history,
                    )
        _reset_sequences()
        for server in servers:  # ids a wiped registry's cache may still know
            decisions.invalidate(server.pk)
    return ImportResult(len(institutions), len(servers), len(users))


def _message(exc: ValidationError) -> str:
    return "; ".join(exc.messages)


def _check_institutions(institutions: list[Institution]) -> list[str]:
    errors = []
    names: set[str] = set()
    for number, institution in enumerate(institutions, start=1):
        try:
            institution.full_clean(validate_unique=False, validate_constraints=False)
        except ValidationError as exc:
            errors.append(f"institutions #{number}: {_message(exc)}")
            continue
        key = institution.name.casefold()
        if key in names:
            duplicate = duplicate_error(INSTITUTION_NAME_UNIQUE, institution.name)
            errors.append(f"institutions #{number}: {_message(duplicate)}")
        names.add(key)
    return errors


def _check_servers(
    servers: list[DicomWebServer], institution_ids: set[int]
) -> list[str]:
    errors = []
    names: set[tuple[int, str]] = set()
    for number, server in enumerate(servers, start=1):
        if server.institution_id not in institution_ids:
            errors.append(
                f"servers #{number}: unknown institution {server.institution_id!r}."
            )
            continue
        key_hash: object = server.edge_key_hash  # any JSON value, as read
        if not (isinstance(key_hash, str) and _KEY_HASH.fullmatch(key_hash)):
            errors.append(
                f"servers #{number}: edge_key_hash is not a SHA-256 in hex "
                f"({escaped(key_hash, 80)})."
            )
            continue
        try:
            server.full_clean(
                exclude=["institution"],
                validate_unique=False,
                validate_constraints=False,
            )
        except ValidationError as exc:
            errors.append(f"servers #{number}: {_message(exc)}")
            continue
        key = (server.institution_id, server.name.casefold())
        if key in names:
            duplicate = duplicate_error(SERVER_NAME_UNIQUE, server.name)
            errors.append(f"servers #{number}: {_message(duplicate)}")
        names.add(key)
    return errors


def _build_approved_users(
    rows: list[dict[str, Any]], server_ids: set[int]
) -> tuple[list[ApprovedUser], list[str]]:
    errors = []
    users = []
    seen: set[tuple[int, str]] = set()
    # One address is usually approved for several servers: normalise it once.
    normalised: dict[str, tuple[str, str]] = {}
    for number, row in enumerate(rows, start=1):
        if row["server_id"] not in server_ids:
            errors.append(
                f"approved_users #{number}: unknown server {row['server_id']!r}."
            )
            continue
        raw = row["email"]
        try:
            identity = normalised.get(raw) if isinstance(raw, str) else None
            if identity is None:
                identity = normalised[raw] = email_identity(raw)
        except ValidationError as exc:
            errors.append(f"approved_users #{number}: {_message(exc)}")
            continue
        email = identity[0]
        key = (row["server_id"], identity[1])
        if key in seen:
            errors.append(
                f"approved_users #{number}: “{email}” is already approved for "
                f"server {row['server_id']}."
            )
            continue
        seen.add(key)
        users.append(
            ApprovedUser(
                id=row["id"],
                server_id=row["server_id"],
                email=email,
                email_key=key[1],
                created_at=row["created_at"],
                expires_at=row["expires_at"],
            )
        )
    return users, errors


def _reset_sequences() -> None:
    """Explicit ids were inserted: move PostgreSQL's sequences past them."""
    statements = connection.ops.sequence_reset_sql(
        no_style(), [Institution, DicomWebServer, ApprovedUser]
    )
    with connection.cursor() as cursor:
        for sql in statements:
            cursor.execute(sql)


def import_csv(stream: IO[str]) -> dict[int, registry.BulkAddResult]:
    """Approve the users of a CSV export (``server_id`` and ``email`` columns)
    for existing servers, all or nothing; answers what each server gained."""
    reader = csv.DictReader(stream)
    if not reader.fieldnames or not {"server_id", "email"} <= set(reader.fieldnames):
        raise TransferError("The CSV needs a header with server_id and email columns.")
    wanted: dict[int, list[str]] = {}
    errors = []
    for row in reader:
        line = reader.line_num
        server_id = parse_id(csv_value(row["server_id"] or "").strip())
        if server_id is None:
            shown = escaped(row["server_id"], 50)
            errors.append(f"Line {line}: “{shown}” is not a server id.")
            continue
        try:
            email = normalize_email(csv_value(row["email"] or ""))
        except ValidationError as exc:
            errors.append(f"Line {line}: {_message(exc)}")
            continue
        wanted.setdefault(server_id, []).append(email)
    servers = DicomWebServer.objects.in_bulk(list(wanted))
    errors += [f"No server with id {pk}." for pk in wanted if pk not in servers]
    if errors:
        raise TransferError("\n".join(errors))
    with transaction.atomic():
        return {
            pk: registry.add_approved_users(servers[pk], emails)
            for pk, emails in wanted.items()
        }
