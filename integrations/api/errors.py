"""Errors the API's views raise beyond DRF's own, and the JSON answer of
every error no view handled under /api/."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable

from django.conf import settings
from django.core.exceptions import BadRequest, SuspiciousOperation, TooManyFieldsSent
from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.http.multipartparser import MultiPartParserError
from django.shortcuts import render
from django.views import defaults
from redis.exceptions import RedisError
from rest_framework import status
from rest_framework.exceptions import APIException, ErrorDetail, NotAuthenticated
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from integrations.api.auth import NOT_PROVIDED

logger = logging.getLogger(__name__)


def exception_handler(exc: Exception, context: dict[str, object]) -> Response | None:
    """DRF's handler, with a 401 for missing credentials that says how to
    send them (as the access question's does), not only that they are missing."""
    if isinstance(exc, NotAuthenticated):
        # The same exception: DRF has set its WWW-Authenticate challenge.
        exc.detail = ErrorDetail(NOT_PROVIDED, code=exc.default_code)
    return drf_exception_handler(exc, context)


class Conflict(APIException):
    status_code = status.HTTP_409_CONFLICT
    default_detail = "The request conflicts with the registry's current state."
    default_code = "conflict"


# --- Unhandled errors under /api/ ---------------------------------------------
# The uploader must tell an outage (try again soon) from a bug: every /api/
# path answers JSON, never Django's HTML error page, and a backing service
# that does not answer is a 503 with Retry-After.

API_PREFIX = "/api/"
# Seconds a client should wait after a 503: about what a database restart or
# a cache failover takes, and the cache's circuit breaker's pause.
RETRY_AFTER_SECONDS = 5
# The database or the cache did not answer: the request may succeed later.
OUTAGES: tuple[type[Exception], ...] = (OperationalError, InterfaceError, RedisError)


# What the client sent wrong, which Django itself answers with a 400
# (handler400 below: JSON under /api/): never a 500.
CLIENT_ERRORS: tuple[type[Exception], ...] = (
    SuspiciousOperation,
    BadRequest,
    MultiPartParserError,
)


def is_outage(exc: BaseException | None) -> bool:
    return isinstance(exc, OUTAGES)


def error_response(exc: BaseException | None) -> JsonResponse:
    """The JSON answer for an exception no view handled: 503 with
    Retry-After for an outage, else 500; never a traceback."""
    if is_outage(exc):
        return JsonResponse(
            {
                "detail": "A service the registry depends on is not answering; "
                f"try again in {RETRY_AFTER_SECONDS} seconds."
            },
            status=status.HTTP_503_SERVICE_UNAVAILABLE,
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        )
    return JsonResponse(
        {"detail": "A server error occurred; it has been logged."},
        status=status.HTTP_500_INTERNAL_SERVER_ERROR,
    )


class ApiErrorsMiddleware:
    """Exceptions raised by a view under /api/ become ``error_response``.
    An outage is logged in one line (the database log tells the rest; a
    traceback per request would drown it), anything else with its
    traceback."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(
        self, request: HttpRequest, exception: Exception
    ) -> HttpResponse | None:
        if not request.path.startswith(API_PREFIX):
            return None
        if isinstance(exception, CLIENT_ERRORS):
            return None  # Django's 400, through handler400
        if is_outage(exception):
            logger.warning(
                "Service unavailable: %s (%s: %s)",
                request.path,
                type(exception).__name__,
                str(exception).strip().splitlines()[0] if str(exception) else "",
            )
        else:
            logger.error("Internal Server Error: %s", request.path, exc_info=exception)
        return error_response(exception)


def server_error(request: HttpRequest) -> HttpResponse:
    """handler500: what a middleware raised (outside any view) answers JSON
    under /api/ too; elsewhere Django's own page."""
    if request.path.startswith(API_PREFIX):
        return error_response(sys.exc_info()[1])
    return defaults.server_error(request)


def bad_request(request: HttpRequest, exception: Exception) -> HttpResponse:
    """handler400: a request Django could not read. Too many form fields is
    said in words with the limit (a long list marked on a page can reach it);
    JSON under /api/; anything else is Django's own page."""
    message = "The request could not be read."
    if isinstance(exception, TooManyFieldsSent):
        message = (
            "The request has more than "
            f"{settings.DATA_UPLOAD_MAX_NUMBER_FIELDS:,} fields, more than this "
            "site reads at once. Please go back and send fewer."
        )
    if request.path.startswith(API_PREFIX):
        return JsonResponse({"detail": message}, status=status.HTTP_400_BAD_REQUEST)
    if not isinstance(exception, TooManyFieldsSent):
        return defaults.bad_request(request, exception)
    return render(
        request,
        "refused.html",
        {"title": "Too many fields", "message": message},
        status=status.HTTP_400_BAD_REQUEST,
    )
