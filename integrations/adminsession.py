"""How long a staff session lasts: an idle timeout and a maximum age.

Staff sessions edit who may see patient images, so a session left open on a
shared workstation must not stay usable for Django's default two weeks. A
session ends after ADMIN_SESSION_IDLE_MINUTES without a request, and
ADMIN_SESSION_MAX_HOURS after its first signed-in request whatever the
activity (Django renews a session's expiry each time it saves it, so the
cookie's age alone caps nothing). The next request is then anonymous: the
admin sends it to its login page.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from django.conf import settings
from django.contrib import auth, messages
from django.contrib.sessions.backends.base import SessionBase
from django.http import HttpRequest, HttpResponse

SIGNED_IN_AT = "_pacsbin_signed_in_at"
SEEN_AT = "_pacsbin_seen_at"
# The last-activity stamp is written at most this often: a session write per
# request would cost a database write on every admin page view.
SEEN_RESOLUTION_SECONDS = 60


def now() -> float:
    """The clock (tests replace it)."""
    return time.time()


def expiry_reason(session: SessionBase, at: float) -> str | None:
    """Why a signed-in session with these stamps has ended at ``at``, or None."""
    signed_in = session.get(SIGNED_IN_AT)
    seen = session.get(SEEN_AT)
    if not isinstance(signed_in, int | float) or not isinstance(seen, int | float):
        return None  # not stamped yet: stamped by this request
    if at - signed_in > settings.ADMIN_SESSION_MAX_HOURS * 3600:
        return f"after {settings.ADMIN_SESSION_MAX_HOURS} hours"
    if at - seen > settings.ADMIN_SESSION_IDLE_MINUTES * 60:
        return f"after {settings.ADMIN_SESSION_IDLE_MINUTES} minutes without activity"
    return None


def stamp(session: SessionBase, at: float) -> None:
    """Record activity; the session is written only when a stamp changes."""
    if not isinstance(session.get(SIGNED_IN_AT), int | float):
        session[SIGNED_IN_AT] = int(at)
        session[SEEN_AT] = int(at)
    elif at - session.get(SEEN_AT, 0) >= SEEN_RESOLUTION_SECONDS:
        session[SEEN_AT] = int(at)


class AdminSessionTimeoutMiddleware:
    """Ends a signed-in session that was idle too long or is too old; after
    AuthenticationMiddleware and MessageMiddleware."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        at = now()
        # The session's own record of a sign-in, not request.user: DRF sets
        # request.user to an API key's client, and stamping its (cookie-less)
        # session would write a session row per API call.
        if auth.SESSION_KEY in request.session:
            reason = expiry_reason(request.session, at)
            if reason is not None:
                auth.logout(request)  # flushes the session
                messages.info(
                    request,
                    f"Your session ended {reason}; please log in again.",
                    fail_silently=True,
                )
            else:
                stamp(request.session, at)
        response = self.get_response(request)
        # A login during this request: its session's clock starts now.
        signed_in = auth.SESSION_KEY in request.session
        if signed_in and SIGNED_IN_AT not in request.session:
            stamp(request.session, at)
        return response
