"""Who made a change: the actor recorded in the audit history.

Every change to institutions, servers and approved users is kept by
django-simple-history. The actor is a staff user (admin, browsable API) or a
label such as ``api-key:deploy-bot``; it is set once per request or command in a
context variable and read when the history row is written, bulk paths included.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from django.db import models
from django.http import HttpRequest, HttpResponse


@dataclass(frozen=True)
class Actor:
    user: Any = None  # a django.contrib.auth User, or None for programs
    label: str = ""

    @property
    def display(self) -> str:
        if self.label:
            return self.label
        return self.user.get_username() if self.user is not None else ""


_actor: ContextVar[Actor | None] = ContextVar("audit_actor", default=None)


def current_actor() -> Actor | None:
    return _actor.get()


@contextmanager
def acting_as(user: Any = None, label: str = "") -> Iterator[Actor]:
    actor = Actor(user=user, label=label or (user.get_username() if user else ""))
    token = _actor.set(actor)
    try:
        yield actor
    finally:
        _actor.reset(token)


class AuditedHistory(models.Model):
    """Extra columns on every historical table."""

    history_actor = models.CharField(
        "actor", max_length=200, blank=True, help_text="Who made the change."
    )

    class Meta:
        abstract = True


def history_user(instance: object = None, request: object = None, **kwargs: Any):
    """simple-history's ``get_user`` hook: the acting staff user, if any."""
    actor = current_actor()
    return actor.user if actor is not None else None


def stamp_history(sender: object, history_instance: Any, **kwargs: Any) -> None:
    """Fills the actor label on every single-object history row."""
    actor = current_actor()
    if actor is not None and not history_instance.history_actor:
        history_instance.history_actor = actor.display


def bulk_history_attrs() -> dict[str, Any]:
    """Arguments for simple-history's bulk helpers, so bulk rows name the actor."""
    actor = current_actor()
    if actor is None:
        return {"default_user": None, "custom_historical_attrs": {}}
    return {
        "default_user": actor.user,
        "custom_historical_attrs": {"history_actor": actor.display},
    }


class AuditActorMiddleware:
    """Names the logged-in user as the actor of changes made in this request."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated:
            with acting_as(user=user):
                return self.get_response(request)
        return self.get_response(request)
