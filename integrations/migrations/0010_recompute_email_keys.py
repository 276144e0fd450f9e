"""Recompute every stored email key with the identity rule of the contract.

The key was the whole address casefolded, which made ``straße.de`` and
``strasse.de`` (and a local part ``ß`` and ``ss``) the same user. It is now
the local part lowered and the domain in IDNA ASCII form, lowered.

The rule is copied here, not imported, so this migration keeps meaning what
it meant when it was written whatever later becomes of the validators.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.db import migrations

BATCH = 2000


def identity_key(email: str) -> str:
    from email_validator import EmailNotValidError, validate_email

    try:
        result = validate_email(email, check_deliverability=False)
        return f"{result.local_part.lower()}@{result.ascii_domain.lower()}"
    except EmailNotValidError:
        # Stored before today's validator: the same rule, by hand.
        local, _, domain = email.rpartition("@")
        try:
            domain = domain.encode("idna").decode("ascii")
        except UnicodeError:
            pass
        return f"{local.lower()}@{domain.lower()}"


def casefold_key(email: str) -> str:
    return email.casefold()


def _recompute(apps: Any, key_of: Callable[[str], str], *, forwards: bool) -> None:
    ApprovedUser = apps.get_model("integrations", "ApprovedUser")
    changed: dict[int, tuple[int, str]] = {}  # pk -> (server id, new key)
    last = 0
    while True:
        rows = list(
            ApprovedUser.objects.filter(pk__gt=last)
            .order_by("pk")
            .values_list("pk", "server_id", "email", "email_key")[:BATCH]
        )
        if not rows:
            break
        for pk, server_id, email, old in rows:
            new = key_of(email)
            if new != old:
                changed[pk] = (server_id, new)
        last = rows[-1][0]

    pks = sorted(changed)
    # First move every changed row out of the way (a key holds "@", so "~pk"
    # is nobody's key), so no row is refused by the uniqueness constraint
    # because another still holds the key it is about to get.
    for start in range(0, len(pks), BATCH):
        batch = [
            ApprovedUser(pk=pk, email_key=f"~{pk}") for pk in pks[start : start + BATCH]
        ]
        ApprovedUser.objects.bulk_update(batch, ["email_key"])

    taken: set[tuple[int, str]] = set()
    keep: list[Any] = []
    duplicates: list[int] = []
    for pk in pks:
        server_id, key = changed[pk]
        if (server_id, key) in taken or (
            ApprovedUser.objects.filter(server_id=server_id, email_key=key).exists()
        ):
            duplicates.append(pk)
            continue
        taken.add((server_id, key))
        keep.append(ApprovedUser(pk=pk, email_key=key))
    if duplicates and not forwards:
        raise RuntimeError(
            "Cannot go back to casefolded email keys: these approvals would "
            f"become duplicates of others on the same server: ids {duplicates}."
        )
    if duplicates:
        # The new key is finer than the old one, so this cannot happen with
        # rows written by this application; should a hand-made row do it, it
        # approves the same user for the same server again: the oldest
        # approval stays and grants exactly the same access.
        print(  # noqa: T201 -- migrations report on stdout
            f"\n  Removed {len(duplicates)} duplicate approval(s): ids {duplicates}"
        )
        for start in range(0, len(duplicates), BATCH):
            ApprovedUser.objects.filter(
                pk__in=duplicates[start : start + BATCH]
            ).delete()
    ApprovedUser.objects.bulk_update(keep, ["email_key"], batch_size=BATCH)

    # The audit history keeps the key beside each email: recompute it too, so
    # a lookup in the history by key finds what a lookup in the registry does.
    History = apps.get_model("integrations", "HistoricalApprovedUser")
    last = 0
    while True:
        rows = list(
            History.objects.filter(history_id__gt=last)
            .order_by("history_id")
            .values_list("history_id", "email", "email_key")[:BATCH]
        )
        if not rows:
            break
        updates = [
            History(history_id=history_id, email_key=key_of(email))
            for history_id, email, old in rows
            if key_of(email) != old
        ]
        History.objects.bulk_update(updates, ["email_key"])
        last = rows[-1][0]


def forwards(apps: Any, schema_editor: Any) -> None:
    _recompute(apps, identity_key, forwards=True)


def backwards(apps: Any, schema_editor: Any) -> None:
    _recompute(apps, casefold_key, forwards=False)


class Migration(migrations.Migration):
    dependencies = [
        ("integrations", "0009_contact_email_any_valid_address"),
    ]

    operations = [
        migrations.RunPython(forwards, backwards, elidable=False),
    ]
