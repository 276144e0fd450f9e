"""The contact's review page, reached only through the emailed link: no
login, CSRF on the form, and a clear page (never a 500) for a link that is
tampered with, expired, or already answered."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods

from integrations.accessreviews import flows
from integrations.edge import usage
from integrations.inputs import is_unsafe, parse_id
from integrations.models import AccessReview, ApprovedUser
from integrations.validators import printable

TEMPLATE = "accessreviews/review.html"


def _refused(
    request: HttpRequest, title: str, message: str, status: int
) -> HttpResponse:
    return render(
        request,
        "accessreviews/refused.html",
        {"title": title, "message": message},
        status=status,
    )


def _closed(request: HttpRequest, review: AccessReview) -> HttpResponse:
    if review.state == AccessReview.State.ANSWERED:
        when = f"{review.answered_at:%Y-%m-%d %H:%M} UTC" if review.answered_at else ""
        return _refused(
            request,
            "This review is already answered",
            f"This access review was already answered ({when}); nothing more "
            "is needed. Pacsbin will ask again at the next review.",
            410,
        )
    return _refused(
        request,
        "This link has expired",
        "This access review is closed, so its link no longer works. If access "
        "still needs changing, please write to Pacsbin.",
        410,
    )


def rows(review: AccessReview) -> list[dict[str, Any]]:
    """Each approved email of the review's server with when and by whom it
    was added (its history) and its last use through the gate; three
    queries whatever the number of emails."""
    server = review.server
    users = usage.with_last_used(
        ApprovedUser.objects.filter(server=server)
        .only("pk", "email", "created_at", "expires_at")
        .order_by("email_key", "pk")
    )
    added: dict[int, str] = {}
    for pk, actor, username in (
        ApprovedUser.history.filter(server_id=server.pk, history_type="+")
        .order_by("history_date")
        .values_list("id", "history_actor", "history_user__username")
    ):
        added[pk] = actor or username or ""
    return [
        {
            "pk": user.pk,
            "email": user.email,
            "created_at": user.created_at,
            "expires_at": user.expires_at,
            "last_used_at": getattr(user, "last_used_at", None),
            "added_by": added.get(user.pk, ""),
        }
        for user in users
    ]


def _parse(request: HttpRequest) -> tuple[set[int], str, list[str]]:
    """The ids marked for removal and the note; messages naming each bad
    value (nothing is written while there is one)."""
    errors: list[str] = []
    ids: set[int] = set()
    for raw in request.POST.getlist("remove"):
        pk = parse_id(raw)
        if pk is None:
            errors.append(f"“{printable(raw, 40)}” is not one of the listed approvals.")
        else:
            ids.add(pk)
    note = request.POST.get("note", "")
    if len(note) > flows.NOTE_LIMIT:
        errors.append(
            f"The note has {len(note):,} characters; at most "
            f"{flows.NOTE_LIMIT:,} are kept. Please shorten it."
        )
    if any(is_unsafe(c) and c not in "\n\r\t" for c in note):
        errors.append("The note contains a control character; please retype it.")
    return ids, note.strip(), errors


@never_cache
@require_http_methods(["GET", "POST"])
def review_page(request: HttpRequest, link: str) -> HttpResponse:
    review = flows.review_for_link(link)
    if review is None:
        return _refused(
            request,
            "This link is not valid",
            "This review link is not one Pacsbin sent, or it was changed on the "
            "way. Please open the link exactly as it is in the email.",
            404,
        )
    now = timezone.now()
    if not flows.is_answerable(review, now):
        return _closed(request, review)
    context: dict[str, Any] = {
        "title": f"Who can reach {review.server.name}?",
        "review": review,
        "server": review.server,
        "errors": [],
        "note": "",
        "marked": set(),
    }
    if request.method == "POST":
        ids, note, errors = _parse(request)
        if errors:
            context.update(errors=errors, note=note, marked=ids)
            context["users"] = rows(review)
            return render(request, TEMPLATE, context, status=400)
        try:
            answered = flows.answer(review, ids, note, now)
        except flows.ReviewClosed as exc:
            return _closed(request, exc.review)
        return render(
            request,
            "accessreviews/answered.html",
            {
                "title": "Thank you",
                "review": answered.review,
                "server": review.server,
                "removed": answered.removed,
            },
        )
    context["users"] = rows(review)
    return render(request, TEMPLATE, context)
