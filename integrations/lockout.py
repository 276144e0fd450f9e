"""Brute-force protection of the admin login, on top of django-axes.

Two limits, because either one alone is easy to walk around:
- per user name and client (AXES_FAILURE_LIMIT, default 5), where an IPv6
  client is its /64: one home or one cloud VM gets a whole /64 and can pick a
  fresh address for every guess;
- per user name from anywhere (AXES_USERNAME_FAILURE_LIMIT, default 20), so a
  botnet with thousands of addresses still gets only a few guesses at "admin"
  per cool-off period. The price is that it can keep that user name locked
  out for a while; staff can still reset it (``manage.py axes_reset``).

axes compares every lockout parameter against the one AXES_FAILURE_LIMIT, so
the handler below counts both and reports the per-user count in its terms.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from axes.handlers.database import AxesDatabaseHandler
from axes.helpers import get_failure_limit
from django.conf import settings
from django.db.models import Sum
from django.http import HttpRequest

from integrations.clientip import client_ip


def login_client(request: HttpRequest) -> str:
    """AXES_CLIENT_IP_CALLABLE: the client's address, or for IPv6 the first
    address of its /64 (still an address, as axes stores it in an IP column)."""
    address = client_ip(request)
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(parsed, ipaddress.IPv6Address):
        if parsed.ipv4_mapped is not None:
            return str(parsed.ipv4_mapped)
        return str(ipaddress.IPv6Network((parsed, 64), strict=False).network_address)
    return str(parsed)


class LoginLockoutHandler(AxesDatabaseHandler):
    """AXES_HANDLER: locked when the (user name, client) failures reach
    AXES_FAILURE_LIMIT or the user name's failures from every client reach
    AXES_USERNAME_FAILURE_LIMIT. Needs AXES_LOCKOUT_PARAMETERS =
    [["username", "ip_address"], "username"], in that order."""

    def get_failures(self, request: Any, credentials: dict | None = None) -> int:
        per_client, per_user = (
            attempts.aggregate(total=Sum("failures_since_start"))["total"] or 0
            for attempts in self.get_user_attempts(request, credentials)
        )
        if per_user >= settings.AXES_USERNAME_FAILURE_LIMIT:
            return max(per_client, get_failure_limit(request, credentials))
        return per_client

    def user_login_failed(
        self, sender: Any, credentials: dict, request: Any = None, **kwargs: Any
    ) -> None:
        # A refused single sign-on (integrations/sso.py) is the provider's and
        # the registry's verdict, not a guessed password; counted under no user
        # name it would soon lock every staffer's sign-on out.
        if "username" not in (credentials or {}):
            return
        super().user_login_failed(sender, credentials, request, **kwargs)

    def reset_user_attempts(
        self, request: HttpRequest, credentials: dict | None = None
    ) -> int:
        """On a successful login, forget this client's failures only: the
        real user logging in from their desk must not hand an attacker
        elsewhere a fresh set of guesses."""
        per_client = self.filter_user_attempts(request, credentials)[0]
        count, _ = per_client.delete()
        return count
