"""The one place that turns a path into an absolute URL for an email.

With debug off every link comes from REGISTRY_PUBLIC_ORIGIN, which settings
require then: a request's ``Host`` only has to pass ALLOWED_HOSTS, so
``Host: registry:1`` (or another allowed name) would otherwise put its port
or name into a link mailed to someone else. Only the local demo (debug on,
no origin set) falls back to the request, or to the first allowed host."""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest


def public_origin(request: HttpRequest | None = None) -> str:
    """``scheme://host[:port]`` of this registry as people reach it."""
    if settings.REGISTRY_PUBLIC_ORIGIN:
        return str(settings.REGISTRY_PUBLIC_ORIGIN).rstrip("/")
    if not settings.DEBUG:
        raise ImproperlyConfigured(
            "REGISTRY_PUBLIC_ORIGIN is required when DJANGO_DEBUG is off: "
            "links in emails are never taken from a request's Host."
        )
    if request is not None:
        return request.build_absolute_uri("/").rstrip("/")
    hosts = [h for h in settings.ALLOWED_HOSTS if h and h != "*"]
    return f"http://{hosts[0].lstrip('.') if hosts else 'localhost'}"


def public_url(path: str, request: HttpRequest | None = None) -> str:
    """``path`` (starting with /) on the public origin."""
    return f"{public_origin(request)}{path}"
