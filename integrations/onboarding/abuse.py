"""Abuse guards of the public onboarding pages.

The pages take input from anyone on the internet and cause email to staff, so:
a per-client submission rate limit kept in the shared cache (several workers
count together), a cap on the request body before Django parses it, and strict
security headers (a Content-Security-Policy with no inline script).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from urllib.parse import urlsplit

from django.conf import settings
from django.core.cache import cache
from django.http import HttpRequest, HttpResponse
from django.template.loader import render_to_string
from django.urls import Resolver404, resolve

from integrations import ratelimit
from integrations.clientip import client_ip

PUBLIC_PREFIX = "/onboarding/"
# 5,000 addresses of ordinary length fit easily; anything bigger is not a form
# a person filled in.
MAX_BODY_BYTES = 1024 * 1024
MAX_EMAILS = 5000
RATE_WINDOW_SECONDS = 3600
# The status page's browser check: a contact fixing their proxy reruns it a
# few times; dozens an hour from one network is someone filling our table.
BROWSER_CHECKS_PER_HOUR = 30
# "Send the confirmation email again" from one network: a few for a slow
# mailbox; more is someone mailing strangers through us.
CONFIRMATION_RESENDS_PER_HOUR = 10
# "Your proxy's URLs" on a status page: each one probes the URLs from the
# registry, so a handful an hour from one network.
PROXY_URL_CHANGES_PER_HOUR = 10

CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
        "object-src 'none'",
    ]
)
_CSP_HOST = re.compile(r"[a-z0-9.:-]+")  # what urlsplit's hostname may hold, lower case


def rate_key(request: HttpRequest, bucket: str = "submissions") -> str:
    """One counter per client and kind of action; an IPv6 client is its /64,
    which it usually owns whole and could otherwise rotate through."""
    address = client_ip(request)
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return f"onboarding:{bucket}:{address or 'unknown'}"
    if ip.version == 6 and ip.ipv4_mapped is None:
        address = str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return f"onboarding:{bucket}:{address}"


def _count(request: HttpRequest, bucket: str, limit: int) -> bool:
    """Count one attempt; True while the client is within ``limit`` an hour
    (counted in the shared cache, so several workers agree)."""
    key = rate_key(request, bucket)
    return ratelimit.count(cache, key, timeout=RATE_WINDOW_SECONDS) <= limit


def count_submission(request: HttpRequest) -> bool:
    """Count one submission attempt; True while the client is within its limit."""
    return _count(request, "submissions", settings.ONBOARDING_SUBMISSIONS_PER_HOUR)


def count_browser_check(request: HttpRequest) -> bool:
    """Count one browser-check report; True while the client is within its limit."""
    return _count(request, "browser-checks", BROWSER_CHECKS_PER_HOUR)


def count_confirmation_resend(request: HttpRequest) -> bool:
    """Count one resend request; True while the client is within its limit."""
    return _count(request, "confirmation-resends", CONFIRMATION_RESENDS_PER_HOUR)


def count_proxy_urls(request: HttpRequest) -> bool:
    """Count one "Your proxy's URLs" post; True while the client is within
    its limit."""
    return _count(request, "proxy-urls", PROXY_URL_CHANGES_PER_HOUR)


def origin_of(url: str) -> str | None:
    """``scheme://host:port`` of a URL, as a CSP source; None when the URL has
    anything that could not be one (the URL validator already refuses those,
    but a header is no place to trust that)."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    host = parts.hostname or ""
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not _CSP_HOST.fullmatch(host):
        return None
    if ":" in host:
        host = f"[{host}]"
    port = port or (443 if scheme == "https" else 80)
    return f"{scheme}://{host}:{port}"


def content_security_policy(connect_origins: list[str]) -> str:
    """The public pages' policy, also allowing fetch() to these origins (the
    status page's browser check talks to the contact's archive)."""
    sources = " ".join(["'self'", *dict.fromkeys(connect_origins)])
    return CONTENT_SECURITY_POLICY.replace(
        "connect-src 'self'", f"connect-src {sources}"
    )


class PublicPagesMiddleware:
    """Body-size cap and security headers for the public onboarding pages.

    A middleware rather than a view decorator: the CSRF middleware reads the
    body before any view runs, and the cap must come first.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        # The front page shares the public pages' template and headers.
        if not (request.path.startswith(PUBLIC_PREFIX) or request.path == "/"):
            return self.get_response(request)
        response = self._refuse_large_body(request) or self.get_response(request)
        response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        response.headers.setdefault("X-Robots-Tag", "noindex, nofollow")
        return response

    def _refuse_large_body(self, request: HttpRequest) -> HttpResponse | None:
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        if length <= MAX_BODY_BYTES:
            return None
        message = (
            f"What you sent is {length:,} bytes; this form accepts at most "
            f"{MAX_BODY_BYTES:,} bytes"
        )
        if _is_access_review(request):
            template = "accessreviews/refused.html"
            message += (
                ". Please go back and mark fewer emails for removal at once: the "
                "review stays open, or ask Pacsbin's staff to remove the rest."
            )
        else:
            template = "onboarding/refused.html"
            message += (
                f" (about {MAX_EMAILS:,} email addresses). Please go back and send "
                "fewer addresses at once: you can add the rest as a change from "
                "your status page later."
            )
        html = render_to_string(
            template,
            {"title": "Submission too large", "message": message},
            request=request,
        )
        return HttpResponse(html, status=413)


def _is_access_review(request: HttpRequest) -> bool:
    """Whether the request is for an access review page (which lives under the
    public prefix), by the URLconf's own name for it."""
    try:
        return resolve(request.path_info).url_name == "access_review"
    except Resolver404:
        return False
