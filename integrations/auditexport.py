"""The audit export: every change to institutions, servers and approvals (the
simple-history tables) and the gate's daily use (EdgeUsage), oldest first.

Each source is read in the order of its own index (``history_date``,
``history_id``; ``day``, ``id``) and the sources are merged by time with
``heapq.merge``, so an export of any size holds one chunk per source in
memory. A row's position ``(at, rank, pk)`` orders it among all rows (rank:
which table, for rows of the same instant) and is the keyset cursor of the
API: a page starts after a position, never at an OFFSET.

A "changed" row's before/after holds the fields that differ from the
object's previous historical record, found by a correlated subquery (its
``history_id``) and fetched for a whole chunk in one query: no query per row.
"""

from __future__ import annotations

import base64
import binascii
import csv
import heapq
import io
import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from itertools import islice
from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import OuterRef, Q, Subquery
from django.utils.dateparse import parse_date, parse_datetime

from integrations.inputs import escaped, parse_id
from integrations.models import ApprovedUser, DicomWebServer, EdgeUsage, Institution
from integrations.transfer import csv_cell
from integrations.validators import email_identity

COLUMNS = (
    "at",
    "actor",
    "action",
    "object_type",
    "object_id",
    "server",
    "email",
    "before",
    "after",
)
# What a staff session needs (a key of scope "manage" holds all three): the
# export shows institutions, servers and approvals, and their history.
PERMISSIONS = (
    "integrations.view_institution",
    "integrations.view_dicomwebserver",
    "integrations.view_approveduser",
)
ACTIONS = {"+": "created", "~": "changed", "-": "deleted"}
USED = "used"
CHUNK = 2_000
# Previous records fetched by one ``IN`` (SQLite's variable limit is 999 on
# old builds).
PREVIOUS_BATCH = 500
# Never in before/after: bookkeeping (every save changes updated_at) and
# what is derived from another field (email_key from email).
_NOT_SHOWN = {"id", "created_at", "updated_at", "email_key"}


def may_export(user: Any) -> bool:
    """A staff user who may see everything the export shows."""
    return bool(
        user is not None
        and user.is_active
        and user.is_staff
        and all(user.has_perm(perm) for perm in PERMISSIONS)
    )


# --- Filters ------------------------------------------------------------------


class FilterError(Exception):
    """Bad filters: ``errors`` maps each parameter to its messages, each
    naming the bad value."""

    def __init__(self, errors: dict[str, list[str]]) -> None:
        super().__init__(errors)
        self.errors = errors


@dataclass(frozen=True)
class Filters:
    institution: int | None = None
    server: int | None = None
    email: str | None = None  # the normalised address
    since: datetime | None = None  # inclusive
    until: datetime | None = None  # exclusive

    def as_params(self) -> dict[str, str]:
        params = {
            "institution": self.institution,
            "server": self.server,
            "email": self.email,
            "since": self.since and iso(self.since),
            "until": self.until and iso(self.until),
        }
        return {name: str(value) for name, value in params.items() if value}


def _instant(raw: str, name: str, end_of_day: bool) -> datetime:
    """An ISO 8601 date or date-time (UTC when no offset is given). A date
    means its start for ``since`` and its end for ``until``."""
    text = raw.strip()
    message = (
        f"“{escaped(raw, 60)}” is not an ISO 8601 date or date-time: write "
        "2026-03-02 or 2026-03-02T08:15:00Z."
    )
    try:
        day = parse_date(text)
        if day is not None:
            start = datetime.combine(day, time.min, tzinfo=UTC)
            if not end_of_day:
                return start
            try:
                return start + timedelta(days=1)
            except OverflowError:  # until 9999-12-31: the end of time
                return datetime.max.replace(tzinfo=UTC)
        moment = parse_datetime(text)
    except ValueError:  # well formed, but no such day or time (2026-02-30)
        raise FilterError({name: [message]}) from None
    if moment is None:
        raise FilterError({name: [message]})
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        raise FilterError({name: [message]}) from None


def parse_filters(params: Mapping[str, str]) -> Filters:
    """The filters of a query string (API and admin alike). Every bad value
    is reported at once; an id that matches nothing is no error (a deleted
    server's history is still found by its id)."""
    errors: dict[str, list[str]] = {}
    found: dict[str, Any] = {}
    for name, what in (("institution", "an institution"), ("server", "a server")):
        raw = params.get(name, "").strip()
        if not raw:
            continue
        number = parse_id(raw)
        if number is None:
            errors[name] = [
                f"“{escaped(raw, 50)}” is not {what} id (a whole number of at "
                "most 19 digits)."
            ]
        else:
            found[name] = number
    raw_email = params.get("email", "").strip()
    if raw_email:
        try:
            found["email"] = email_identity(raw_email)[0]
        except ValidationError as exc:
            errors["email"] = [escaped(message) for message in exc.messages]
    for name in ("since", "until"):
        raw = params.get(name, "").strip()
        if not raw:
            continue
        try:
            found[name] = _instant(raw, name, end_of_day=name == "until")
        except FilterError as exc:
            errors.update(exc.errors)
    since, until = found.get("since"), found.get("until")
    if since and until and since >= until:
        errors["until"] = [
            f"“{escaped(params['until'].strip(), 60)}” is not after since "
            f"(“{escaped(params['since'].strip(), 60)}”)."
        ]
    if errors:
        raise FilterError(errors)
    return Filters(**found)


# --- Rows ---------------------------------------------------------------------


@dataclass(frozen=True, order=True)
class Position:
    """Where a row stands in the export: time, then table, then row id."""

    at: datetime
    rank: int
    pk: int

    def token(self) -> str:
        raw = json.dumps([iso(self.at), self.rank, self.pk], separators=(",", ":"))
        return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")

    @classmethod
    def from_token(cls, token: str) -> Position:
        message = f"“{escaped(token, 60)}” is not a cursor of this export."
        try:
            padded = token + "=" * (-len(token) % 4)
            at, rank, pk = json.loads(base64.urlsafe_b64decode(padded.encode()))
            moment = datetime.fromisoformat(at.replace("Z", "+00:00"))
            if moment.tzinfo is not None:
                moment = moment.astimezone(UTC)
        except (
            ValueError,
            TypeError,
            OverflowError,
            binascii.Error,
            UnicodeError,
            AttributeError,
        ):
            raise FilterError({"cursor": [message]}) from None
        valid = (
            moment.tzinfo is not None
            and type(rank) is int
            and 0 <= rank < len(_SOURCES)
            and parse_id(pk) is not None
        )
        if not valid:
            raise FilterError({"cursor": [message]})
        return cls(moment, rank, pk)


@dataclass(frozen=True)
class AuditRow:
    position: Position
    actor: str
    action: str
    object_type: str
    object_id: int
    server: int | None
    email: str
    before: dict[str, Any] | None
    after: dict[str, Any] | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "at": iso(self.position.at),
            "actor": self.actor,
            "action": self.action,
            "object_type": self.object_type,
            "object_id": self.object_id,
            "server": self.server,
            "email": self.email,
            "before": self.before,
            "after": self.after,
        }


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return iso(value)
    if isinstance(value, date):
        return value.isoformat()
    return value


def _batches(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    iterator = iter(items)
    while batch := list(islice(iterator, size)):
        yield batch


# --- Sources ------------------------------------------------------------------


@dataclass(frozen=True)
class _History:
    """One simple-history table."""

    model: type[models.Model]
    object_type: str
    server_field: str | None  # the column naming the server, if any
    email_field: str | None

    @property
    def historical(self) -> type[models.Model]:
        return self.model.history.model  # type: ignore[attr-defined]

    def fields(self) -> list[tuple[str, str]]:
        """(name shown, column) of every tracked field shown in before/after."""
        return [
            (field.name, field.attname)
            for field in self.model._meta.concrete_fields
            if field.name not in _NOT_SHOWN and hasattr(self.historical, field.attname)
        ]


@dataclass(frozen=True)
class _Usage:
    object_type: str = "edge_usage"


_SOURCES: tuple[_History | _Usage, ...] = (
    _History(Institution, "institution", None, None),
    _History(DicomWebServer, "server", "id", None),
    _History(ApprovedUser, "approved_user", "server_id", "email"),
    _Usage(),
)


def _of_institution(column: str, institution: int) -> Q:
    """Rows whose ``column`` names a server that is or ever was the
    institution's (deleted servers included, and servers written without
    history)."""
    historical = DicomWebServer.history.model
    ever = historical.objects.filter(institution_id=institution).values("id")
    now = DicomWebServer.objects.filter(institution_id=institution).values("pk")
    return Q(**{f"{column}__in": ever}) | Q(**{f"{column}__in": now})


def _scope(source: _History | _Usage, filters: Filters) -> Q | None:
    """What the filters keep of one table (None: nothing)."""
    scope = Q()
    server_column = "server_id" if isinstance(source, _Usage) else source.server_field
    if filters.institution is not None:
        if server_column is None:
            scope &= Q(id=filters.institution)
        else:
            scope &= _of_institution(server_column, filters.institution)
    if filters.server is not None:
        if server_column is None:
            return None
        scope &= Q(**{server_column: filters.server})
    if filters.email is not None:
        if isinstance(source, _Usage):
            scope &= Q(email__iexact=filters.email)
        elif source.email_field is None:
            return None
        else:
            scope &= Q(email_key=email_identity(filters.email)[1])
    return scope


def _history_after(position: Position, rank: int) -> Q:
    at, pk = position.at, position.pk
    if rank < position.rank:
        return Q(history_date__gt=at)
    if rank > position.rank:
        return Q(history_date__gte=at)
    return Q(history_date__gte=at) & (Q(history_date__gt=at) | Q(history_id__gt=pk))


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


def _first_day_from(moment: datetime) -> date:
    """The first day whose midnight is at or after ``moment`` (the last day
    there is, at the end of the calendar)."""
    day = moment.date()
    if _midnight(day) == moment or day == date.max:
        return day
    return day + timedelta(days=1)


def _usage_after(position: Position, rank: int) -> Q:
    at = position.at.astimezone(UTC)
    later = Q(day__gt=at.date())
    if _midnight(at.date()) != at or rank < position.rank:
        return later
    if rank > position.rank:
        return later | Q(day=at.date())
    return later | Q(day=at.date(), id__gt=position.pk)


def _history_rows(
    source: _History,
    rank: int,
    filters: Filters,
    after: Position | None,
    limit: int | None,
) -> Iterator[AuditRow]:
    scope = _scope(source, filters)
    if scope is None:
        return
    historical = source.historical
    records = historical.objects.filter(scope)  # type: ignore[attr-defined]
    if filters.since:
        records = records.filter(history_date__gte=filters.since)
    if filters.until:
        records = records.filter(history_date__lt=filters.until)
    if after is not None:
        records = records.filter(_history_after(after, rank))
    previous = (
        historical.objects.filter(  # type: ignore[attr-defined]
            id=OuterRef("id"), history_date__lte=OuterRef("history_date")
        )
        .filter(
            Q(history_date__lt=OuterRef("history_date"))
            | Q(history_id__lt=OuterRef("history_id"))
        )
        .order_by("-history_date", "-history_id")
        .values("history_id")[:1]
    )
    fields = source.fields()
    columns = [column for _name, column in fields]
    username = f"history_user__{get_user_model().USERNAME_FIELD}"
    records = (
        records.annotate(previous_id=Subquery(previous))
        .order_by("history_date", "history_id")
        .values_list(
            "history_id",
            "history_date",
            "history_type",
            "history_actor",
            username,
            "id",
            "previous_id",
            *columns,
        )
    )
    chunks = (
        [list(records[:limit])]
        if limit is not None
        else _batches(records.iterator(chunk_size=CHUNK), CHUNK)
    )
    names = [name for name, _column in fields]
    # The server a row is about: the object itself, a column, or none.
    server_at = (
        columns.index(source.server_field) if source.server_field in columns else None
    )
    email_at = names.index(source.email_field) if source.email_field else None
    for chunk in chunks:
        wanted = [row[6] for row in chunk if row[2] == "~" and row[6] is not None]
        previous_values: dict[int, tuple[Any, ...]] = {}
        for ids in _batches(wanted, PREVIOUS_BATCH):
            for values in historical.objects.filter(  # type: ignore[attr-defined]
                history_id__in=ids
            ).values_list("history_id", *columns):
                previous_values[values[0]] = values[1:]
        for history_id, when, kind, label, user, object_id, prev, *values in chunk:
            now = dict(zip(names, map(_jsonable, values), strict=True))
            before: dict[str, Any] | None = None
            after_values: dict[str, Any] | None = now
            if kind == "-":
                before, after_values = now, None
            elif kind == "~" and prev in previous_values:
                old = dict(
                    zip(names, map(_jsonable, previous_values[prev]), strict=True)
                )
                changed = [name for name in names if old[name] != now[name]]
                before = {name: old[name] for name in changed}
                after_values = {name: now[name] for name in changed}
            server = object_id if source.server_field == "id" else None
            if server_at is not None:
                server = values[server_at]
            yield AuditRow(
                position=Position(when.astimezone(UTC), rank, history_id),
                actor=label or user or "",
                action=ACTIONS.get(kind, kind),
                object_type=source.object_type,
                object_id=object_id,
                server=server,
                email=values[email_at] if email_at is not None else "",
                before=before,
                after=after_values,
            )


def _usage_rows(
    rank: int, filters: Filters, after: Position | None, limit: int | None
) -> Iterator[AuditRow]:
    scope = _scope(_SOURCES[rank], filters)
    if scope is None:
        return
    usage = EdgeUsage.objects.filter(scope)
    if filters.since:
        usage = usage.filter(day__gte=_first_day_from(filters.since))
    if filters.until:
        usage = usage.filter(day__lt=_first_day_from(filters.until))
    if after is not None:
        usage = usage.filter(_usage_after(after, rank))
    rows = usage.order_by("day", "id").values_list(
        "id", "server_id", "email", "day", "granted", "refused", "last_used_at"
    )
    found = rows[:limit] if limit is not None else rows.iterator(chunk_size=CHUNK)
    for pk, server, email, day, granted, refused, last_used_at in found:
        yield AuditRow(
            position=Position(_midnight(day), rank, pk),
            # The person who used the server: the token's email.
            actor=email,
            action=USED,
            object_type="edge_usage",
            object_id=pk,
            server=server,
            email=email,
            before=None,
            after={
                "day": day.isoformat(),
                "granted": granted,
                "refused": refused,
                "last_used_at": _jsonable(last_used_at),
            },
        )


def rows(
    filters: Filters, after: Position | None = None, limit: int | None = None
) -> Iterator[AuditRow]:
    """Every row the filters keep, oldest first, after ``after``. ``limit``
    caps what each table gives (a page needs no more than its size + 1)."""
    streams = [
        _history_rows(source, rank, filters, after, limit)
        if isinstance(source, _History)
        else _usage_rows(rank, filters, after, limit)
        for rank, source in enumerate(_SOURCES)
    ]
    return heapq.merge(*streams, key=lambda row: row.position)


def page(
    filters: Filters, after: Position | None, size: int
) -> tuple[list[AuditRow], Position | None]:
    """Up to ``size`` rows after ``after``, and the position the next page
    starts after (None: this was the last)."""
    found = list(islice(rows(filters, after, limit=size + 1), size + 1))
    if len(found) <= size:
        return found, None
    return found[:size], found[size - 1].position


# What one piece of the CSV stream holds, about: each piece is one write to
# the client, so a piece per row would be a system call per row.
STREAM_PIECE = 64 * 1024


def csv_pieces(filters: Filters) -> Iterator[str]:
    """The export as CSV (a header, then one line per row) in pieces of about
    ``STREAM_PIECE`` characters, every cell formula-safe; before/after as
    JSON."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(COLUMNS)
    for row in rows(filters):
        values = row.as_dict()
        for name in ("before", "after"):
            value = values[name]
            values[name] = (
                ""
                if value is None
                else json.dumps(value, ensure_ascii=False, default=str)
            )
        if values["server"] is None:
            values["server"] = ""
        writer.writerow([csv_cell(values[name]) for name in COLUMNS])
        if buffer.tell() >= STREAM_PIECE:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    if buffer.tell():
        yield buffer.getvalue()
