"""Taking a browser's connectivity report over HTTP: the one place that reads
the JSON body, caps its size and decides which origin was tested, shared by
the staff endpoint in the admin and the contact's status page."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.http import HttpRequest, JsonResponse

from integrations.connectivity import runs
from integrations.inputs import JsonInputError, load_json
from integrations.models import DicomWebServer, OnboardingRequest

# A report is an outcome and at most 20 short findings: a few kilobytes.
MAX_BROWSER_REPORT_BYTES = 64 * 1024


def tested_origin(request: HttpRequest) -> str:
    """The origin the browser ran the check from: the one this request came
    from (the browser sets ``Origin`` itself), not anything the page claims."""
    return request.headers.get("Origin") or f"{request.scheme}://{request.get_host()}"


def _too_large(request: HttpRequest) -> int | None:
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        declared = 0
    if declared > MAX_BROWSER_REPORT_BYTES:
        return declared  # refused before the body is read
    size = len(request.body)
    return size if size > MAX_BROWSER_REPORT_BYTES else None


def record_from_request(
    request: HttpRequest,
    *,
    server: DicomWebServer | None,
    onboarding_request: OnboardingRequest | None = None,
    user: Any = None,
) -> JsonResponse:
    """Record the JSON report ``{outcome, findings}`` in this POST's body:
    201 with the check, or 400/413 naming what is wrong and nothing written.
    The caller has already decided who may report for what."""
    size = _too_large(request)
    if size is not None:
        return JsonResponse(
            {
                "detail": f"The report is {size:,} bytes; at most "
                f"{MAX_BROWSER_REPORT_BYTES:,} are accepted."
            },
            status=413,
        )
    try:
        report = load_json(request.body)
    except JsonInputError as exc:
        return JsonResponse(
            {"detail": f"{exc} Send a JSON object {{outcome, findings}}."},
            status=400,
        )
    if not isinstance(report, dict):
        return JsonResponse(
            {
                "detail": f"The report is a JSON {type(report).__name__}, not an "
                "object {outcome, findings}."
            },
            status=400,
        )
    try:
        check = runs.record_browser_check(
            server,
            tested_origin(request),
            report.get("outcome"),
            report.get("findings"),
            user=user,
            onboarding_request=onboarding_request,
        )
    except ValidationError as exc:
        return JsonResponse(exc.message_dict, status=400)
    return JsonResponse(check.to_dict(), status=201)
