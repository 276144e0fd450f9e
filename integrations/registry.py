"""Flows that cross models, each one named function in one transaction."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import TypeVar

from django.db import IntegrityError, transaction
from django.db.models import QuerySet
from django.utils import timezone
from simple_history.utils import bulk_create_with_history, bulk_update_with_history

from integrations import audit
from integrations.edge import decisions, edgekeys
from integrations.expiry import Expiry
from integrations.models import ApprovedUser, DicomWebServer
from integrations.validators import email_key, fold_emails

BULK_BATCH_SIZE = 2000
# Rounds of read-then-insert before a bulk add gives up on another writer that
# keeps approving the same emails at the same moment (each round sees its rows).
ADD_ATTEMPTS = 5


T = TypeVar("T")


def chunks(items: list[T], size: int = BULK_BATCH_SIZE) -> Iterator[list[T]]:
    """``items`` in slices of at most ``size``: an ``IN`` list or a write
    batch every database takes."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


@dataclass
class BulkAddResult:
    added: list[str] = field(default_factory=list)
    existing: list[str] = field(default_factory=list)
    # Of ``existing``, those whose end date the addition changed.
    end_changed: list[str] = field(default_factory=list)


class BulkEmailError(ValueError):
    """Some emails were invalid; nothing was written."""

    def __init__(self, errors: list[tuple[int, str, str]]) -> None:
        self.errors = errors  # (position, value, message)
        super().__init__("; ".join(message for _, _, message in errors))


def normalise_all(emails: Iterable[str]) -> list[str]:
    """Normalise every email, folding duplicates; raise BulkEmailError naming
    every bad one (by 1-based position) if any is invalid."""
    folded = fold_emails(enumerate(emails, start=1))
    if folded.errors:
        raise BulkEmailError(folded.errors)
    return folded.emails


def add_approved_users(
    server: DicomWebServer, emails: Iterable[str], expiry: Expiry | None = None
) -> BulkAddResult:
    """Approve many emails for one server, all or nothing, with audit history.

    Every email is validated first: any bad one raises BulkEmailError naming
    each, and nothing is written. Ones already approved are reported, not
    duplicated. Answers the normalised forms.

    ``expiry`` (None: not said) is the end of every approval named: the new
    ones get it, and so do the existing ones (re-approving someone "for 90
    days" renews them), each change in the history.
    """
    return add_normalised_users(server, normalise_all(emails), expiry)


def add_normalised_users(
    server: DicomWebServer, emails: list[str], expiry: Expiry | None = None
) -> BulkAddResult:
    """The writing half of ``add_approved_users``, for callers that ran
    ``normalise_all`` themselves to report bad values their own way, so no
    address is validated twice. ``emails`` must be what ``normalise_all`` gave.

    Concurrent adds of the same emails never fail: bulk adds to one server
    take turns (the server row's lock on PostgreSQL, the write lock that every
    transaction takes at its start on SQLite), and if a writer that takes no
    such turn (a form in the admin) approved one of the emails between the read
    and the insert, the whole attempt rolls back and runs again, so each email
    is reported as added to exactly one caller."""
    wanted = {email_key(email): email for email in emails}
    attempt = 1
    while True:
        try:
            with transaction.atomic():
                return _add_missing(server, wanted, expiry)
        except IntegrityError:
            if attempt >= ADD_ATTEMPTS:
                raise
            attempt += 1


def existing_keys(server: DicomWebServer, keys: list[str]) -> set[str]:
    """Which of these email keys are already approved for the server."""
    found: set[str] = set()
    for batch in chunks(keys):
        found.update(
            ApprovedUser.objects.filter(server=server, email_key__in=batch).values_list(
                "email_key", flat=True
            )
        )
    return found


def _add_missing(
    server: DicomWebServer, wanted: dict[str, str], expiry: Expiry | None
) -> BulkAddResult:
    """One attempt of ``add_normalised_users``, inside its transaction."""
    result = BulkAddResult()
    # Lock the server row so two bulk adds to one server serialise cleanly.
    DicomWebServer.objects.select_for_update().filter(pk=server.pk).exists()
    existing = existing_keys(server, list(wanted))
    now = timezone.now()
    new_rows = []
    for key, email in wanted.items():
        if key in existing:
            result.existing.append(email)
        else:
            result.added.append(email)
            new_rows.append(
                ApprovedUser(
                    server=server,
                    email=email,
                    email_key=key,
                    created_at=now,
                    expires_at=expiry.at if expiry else None,
                )
            )
    if expiry is not None and existing:
        result.end_changed = _set_end(server, sorted(existing), expiry, now)
    if new_rows:
        bulk_create_with_history(
            new_rows,
            ApprovedUser,
            batch_size=BULK_BATCH_SIZE,
            default_date=now,
            **audit.bulk_history_attrs(),
        )
        decisions.invalidate(server.pk)  # bulk_create sends no signal
    return result


def _set_end(
    server: DicomWebServer, keys: list[str], expiry: Expiry, now: datetime
) -> list[str]:
    """Give these existing approvals ``expiry``'s end (audited, one history
    row each that changes); the emails changed. A new end is told anew a
    week before it (expiry.notify_expiring)."""
    changed: list[ApprovedUser] = []
    for batch in chunks(keys):
        rows = ApprovedUser.objects.filter(server=server, email_key__in=batch)
        rows = (
            rows.exclude(expires_at=expiry.at)
            if expiry.at
            else rows.filter(expires_at__isnull=False)
        )
        changed.extend(rows.order_by("email_key"))
    for row in changed:
        row.expires_at = expiry.at
        row.expiry_notified_at = None
    if changed:
        bulk_update_with_history(
            changed,
            ApprovedUser,
            ["expires_at", "expiry_notified_at"],
            batch_size=BULK_BATCH_SIZE,
            default_date=now,
            **audit.bulk_history_attrs(),
        )
        decisions.invalidate(server.pk)  # bulk_update sends no signal
    return [row.email for row in changed]


def remove_approved_users(server: DicomWebServer, emails: Iterable[str]) -> list[str]:
    """Remove approvals of one server, all or nothing, with audit history.

    Answers the normalised emails that were removed (absent ones are skipped).
    """
    keys = [email_key(email) for email in emails]
    removed: list[ApprovedUser] = []
    with transaction.atomic():
        for batch in chunks(keys):
            removed.extend(
                ApprovedUser.objects.filter(server=server, email_key__in=batch)
            )
        record_bulk_deletion(removed)
        for ids in chunks([row.pk for row in removed]):
            # A plain DELETE: .delete() would send post_delete per row and
            # simple-history would write each history row again, one by one.
            doomed = ApprovedUser.objects.filter(pk__in=ids)
            doomed._raw_delete(doomed.db)
        if removed:
            decisions.invalidate(server.pk)  # a raw delete sends no signal
    return [row.email for row in removed]


def record_bulk_deletion(rows: list[ApprovedUser]) -> None:
    """History rows of type '-' for rows about to be deleted in bulk."""
    if not rows:
        return
    history_model = ApprovedUser.history.model
    attrs = audit.bulk_history_attrs()
    now = timezone.now()
    history_model.objects.bulk_create(
        [
            history_model(
                id=row.pk,
                server_id=row.server_id,
                email=row.email,
                email_key=row.email_key,
                created_at=row.created_at,
                expires_at=row.expires_at,
                history_date=now,
                history_type="-",
                history_user=attrs["default_user"],
                **attrs["custom_historical_attrs"],
            )
            for row in rows
        ],
        batch_size=BULK_BATCH_SIZE,
    )


def set_status(servers: QuerySet[DicomWebServer], status: str) -> int:
    """Change the status of several servers, one audited save each."""
    changed = 0
    with transaction.atomic():
        # Lock the servers' own rows only: a caller's queryset may join
        # nullable relations (the admin list joins health), which PostgreSQL
        # cannot lock.
        for server in servers.select_related(None).select_for_update(of=("self",)):
            if server.status != status:
                server.status = status
                server.save(update_fields=["status", "updated_at"])
                changed += 1
    return changed


def replace_edge_key(server: DicomWebServer) -> str:
    """A new edge key for ``server``, answered raw (the only time it exists);
    the old one stops working at once. Audited: the history row shows the
    key's new creation time (never its hash)."""
    raw = edgekeys.new_edge_key(server.pk)
    with transaction.atomic():
        server.edge_key_hash = edgekeys.hashed(raw)
        server.edge_key_created_at = timezone.now()
        server.save(
            update_fields=["edge_key_hash", "edge_key_created_at", "updated_at"]
        )
    return raw
