"""Running and recording connectivity checks."""

from __future__ import annotations

import re
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError

from integrations.connectivity import capabilities, client, probe
from integrations.inputs import codepoint, escaped, first_unsafe
from integrations.models import (
    CheckOutcome,
    ConnectivityCheck,
    DicomWebServer,
    OnboardingRequest,
)
from integrations.validators import normalize_origin

MAX_FINDINGS = 20
MAX_CODE_LENGTH = 64
MAX_MESSAGE_LENGTH = 1000
_CODE = re.compile(r"^[a-z0-9_]+$")


def probe_server(
    server: DicomWebServer, origin: str, *, limits: client.Limits | None = None
) -> probe.ProbeResult:
    """The server-side probe of ``server`` as it is set up: its URLs, whether
    it needs credentials, and, behind Pacsbin's proxy, the proxy's settings
    (no /metadata there: the retrieve step takes an instance). No database.
    The one way a check someone runs and a monitoring round probe a server."""
    return probe.probe(
        server.qido_url,
        server.wado_url,
        origin,
        needs_credentials=server.needs_credentials,
        limits=limits,
        pacsbin_proxy=server.pacsbin_proxy
        if server.cors_mode == DicomWebServer.CorsMode.DIMSE_PROXY
        else None,
    )


def run_check(
    server: DicomWebServer,
    origin: str | None = None,
    source: str = ConnectivityCheck.Source.SERVER,
    *,
    user: Any = None,
    limits: client.Limits | None = None,
    relearn: bool = False,
) -> ConnectivityCheck:
    """Probe the server for one origin (default: the first uploader origin) from
    the registry, and record the check. An ok check also learns what the
    archive does (capabilities.py): when ``relearn`` (a check someone asked
    for), else only if not learnt within ``capabilities.RELEARN_SECONDS``."""
    if source != ConnectivityCheck.Source.SERVER:
        raise ValueError(
            "run_check runs the server-side probe; record what a browser saw "
            "with record_browser_check."
        )
    origin = normalize_origin(origin) if origin else settings.UPLOADER_ORIGINS[0]
    result = probe_server(server, origin, limits=limits)
    # The archive wrote part of these findings: stored escaped and capped.
    check = ConnectivityCheck.objects.record(
        server=server,
        created_by=user if user is not None and user.is_authenticated else None,
        source=ConnectivityCheck.Source.SERVER,
        origin=origin,
        outcome=result.outcome,
        findings=[finding.to_dict() for finding in result.findings],
    )
    if check.outcome == CheckOutcome.OK:
        capabilities.learn_and_record(server, force=relearn)  # never raises
    return check


def run_request_check(onboarding_request: OnboardingRequest) -> ConnectivityCheck:
    """The server-side probe of a request's URLs before review (a reverse
    proxy's URLs the contact just gave), from the first uploader origin,
    recorded on the request: the SSRF guard refuses a private or loopback
    address (outcome "blocked": only the contact's browser can check it)."""
    r = onboarding_request
    origin = settings.UPLOADER_ORIGINS[0]
    described = DicomWebServer(**r.server_values())
    result = probe_server(described, origin)
    return ConnectivityCheck.objects.record(
        onboarding_request=r,
        source=ConnectivityCheck.Source.SERVER,
        origin=origin,
        outcome=result.outcome,
        findings=[finding.to_dict() for finding in result.findings],
    )


def run_checks(
    server: DicomWebServer, origins: list[str] | None = None, *, user: Any = None
) -> list[ConnectivityCheck]:
    """One check per origin (default: every uploader origin), asked for by
    someone: the first ok one relearns the archive's capabilities (they do
    not depend on the origin)."""
    return [
        run_check(server, origin, user=user, relearn=number == 0)
        for number, origin in enumerate(origins or settings.UPLOADER_ORIGINS)
    ]


def record_browser_check(
    server: DicomWebServer | None,
    origin: Any,
    outcome: Any,
    findings: Any,
    user: Any = None,
    *,
    onboarding_request: OnboardingRequest | None = None,
) -> ConnectivityCheck:
    """Record what someone's browser reported, for a server, an onboarding
    request, or both; ValidationError naming every bad value, and nothing
    written, when the report is malformed."""
    if server is None and onboarding_request is None:
        raise ValueError("A browser check is recorded for a server or a request.")
    errors: dict[str, list[ValidationError]] = {}
    try:
        origin = normalize_origin(origin)
    except ValidationError as exc:
        errors["origin"] = exc.error_list
    if outcome not in CheckOutcome.values or outcome == CheckOutcome.BLOCKED:
        # "blocked" is the registry's own SSRF guard; a browser has none.
        errors["outcome"] = [
            ValidationError(
                "“%(value)s” is not an outcome a browser can report.",
                code="invalid_outcome",
                params={"value": escaped(outcome, 50)},
            )
        ]
    cleaned, finding_errors = _clean_findings(findings)
    if finding_errors:
        errors["findings"] = finding_errors
    if errors:
        raise ValidationError(errors)
    return ConnectivityCheck.objects.record(
        server=server,
        onboarding_request=onboarding_request,
        created_by=user if user is not None and user.is_authenticated else None,
        source=ConnectivityCheck.Source.BROWSER,
        origin=origin,
        outcome=outcome,
        findings=cleaned,
    )


def _clean_findings(
    findings: Any,
) -> tuple[list[dict[str, str]], list[ValidationError]]:
    if not isinstance(findings, list):
        return [], [ValidationError("Findings must be a list of {code, message}.")]
    if len(findings) > MAX_FINDINGS:
        return [], [ValidationError(f"At most {MAX_FINDINGS} findings, please.")]
    cleaned: list[dict[str, str]] = []
    errors: list[ValidationError] = []
    for number, finding in enumerate(findings, start=1):
        code = finding.get("code") if isinstance(finding, dict) else None
        message = finding.get("message") if isinstance(finding, dict) else None
        if not (
            isinstance(finding, dict)
            and set(finding) == {"code", "message"}
            and isinstance(code, str)
            and _CODE.fullmatch(code)
            and len(code) <= MAX_CODE_LENGTH
            and isinstance(message, str)
            and 0 < len(message) <= MAX_MESSAGE_LENGTH
        ):
            errors.append(
                ValidationError(
                    "Finding %(number)s (%(value)s) is not {code, message} with a "
                    "code of lower-case letters, digits and _ (at most "
                    f"{MAX_CODE_LENGTH}) and a message of at most "
                    f"{MAX_MESSAGE_LENGTH} characters.",
                    code="invalid_finding",
                    params={"number": number, "value": escaped(repr(finding), 80)},
                )
            )
            continue
        unsafe = first_unsafe(message)
        if unsafe is not None:
            errors.append(
                ValidationError(
                    "Finding %(number)s's message (“%(value)s”) holds %(character)s, "
                    "a control character or lone surrogate: send plain text.",
                    code="invalid_finding",
                    params={
                        "number": number,
                        "value": escaped(message, 80),
                        "character": codepoint(unsafe),
                    },
                )
            )
            continue
        cleaned.append({"code": code, "message": message})
    return cleaned, errors
