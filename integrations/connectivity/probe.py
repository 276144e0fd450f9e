"""The server-side probe: will a browser on an origin be allowed to use an archive?

It does what the uploader's browser does: a CORS preflight for a QIDO search
carrying Authorization, the QIDO search itself, and, when a study comes back, a
WADO-RS metadata request, then judges each answer the way a browser would.
Pure logic on top of ``client.fetch``; nothing here touches the database.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from integrations.connectivity import client
from integrations.models import CheckOutcome

# Worst first: the check's outcome is the worst of its findings. A failed QIDO
# answer hides everything after it, and a missing header on the search itself
# matters more than one on the preflight (a search without Authorization needs
# no preflight).
SEVERITY = [
    CheckOutcome.BLOCKED,
    CheckOutcome.UNREACHABLE,
    CheckOutcome.TLS_ERROR,
    CheckOutcome.NOT_DICOMWEB,
    CheckOutcome.CREDENTIALS_MISCONFIGURED,
    CheckOutcome.CORS_MISSING,
    CheckOutcome.CORS_ORIGIN_MISMATCH,
    CheckOutcome.PREFLIGHT_FAILED,
    CheckOutcome.OK,
]

DICOM_JSON = "application/dicom+json"
# A DICOM UID: digits and dots, at most 64 (anything else is not asked for).
_UID = re.compile(r"[0-9.]{1,64}", re.ASCII)
# A path no archive serves: its answer shows whether errors carry CORS headers.
ERROR_PROBE_PATH = "/pacsbin-connectivity-check-404"
FIX = (
    "Fix: make the archive send the header, or put a reverse proxy in front of "
    "it (the fix-it configurations for nginx, Apache and Caddy on the server's "
    "page do exactly this), or run Pacsbin's own proxy in front of it (how "
    "CORS is met: Pacsbin's proxy; the server's page then gives its "
    "config.jsonc)."
)

_TRANSPORT_OUTCOMES = {
    "blocked": CheckOutcome.BLOCKED,
    "dns": CheckOutcome.UNREACHABLE,
    "refused": CheckOutcome.UNREACHABLE,
    "timeout": CheckOutcome.UNREACHABLE,
    "broken": CheckOutcome.UNREACHABLE,
    "redirect_loop": CheckOutcome.UNREACHABLE,
    # Not followed (client.fetch); a browser sending Authorization could not
    # follow it either: redirects fail a CORS preflight.
    "redirect_off_origin": CheckOutcome.PREFLIGHT_FAILED,
    "tls": CheckOutcome.TLS_ERROR,
    "too_large": CheckOutcome.NOT_DICOMWEB,
}
_TRANSPORT_ADVICE = {
    "blocked": "",
    "dns": " Check the host name in the URL.",
    "refused": " Check the host and port, and that a firewall lets the "
    "registry in (or run the check from your own browser inside the network).",
    "timeout": " The archive may be behind a firewall that drops the "
    "registry's connections: run the check from your own browser inside the "
    "network.",
    "broken": " Check that the URL's scheme (http or https) matches the port.",
    "redirect_loop": " Register the final URL instead.",
    "redirect_off_origin": " Browsers do not follow redirects on a CORS "
    "preflight either: if that is where the archive now lives, register it as "
    "the QIDO URL instead.",
    "tls": " Browsers refuse such a connection too: install a certificate "
    "from a public authority that matches the host name.",
    "too_large": " A search with limit=1 should be small: check that this is "
    "the archive's DICOMweb root.",
}


# Where an alert mail's finding names what the archive sent, quoted apart.
ARCHIVE_TEXT_POINTER = "(the archive's text, quoted below)"


@dataclass(frozen=True)
class Finding:
    code: str
    message: str
    # What this finding alone would make the check.
    outcome: CheckOutcome = CheckOutcome.OK
    # The archive's own text the message repeats, verbatim: a header's value,
    # a redirect target, its error text, the TLS library's reason for refusing
    # its certificate. An archive chooses these (3,000 characters, line breaks,
    # anything), so mail to staff quotes them apart, cut short (own_words).
    archive_text: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message}

    def own_words(self) -> str:
        """The message with each of the archive's texts replaced by a pointer
        to its quotation: only the registry's own words."""
        message = self.message
        for text in sorted(self.archive_text, key=len, reverse=True):
            if text:
                message = message.replace(f"“{text}”", ARCHIVE_TEXT_POINTER)
                message = message.replace(text, ARCHIVE_TEXT_POINTER)
        return message


# Days before a certificate expires when a check says so (and monitoring
# alerts once at each).
TLS_WARNING_DAYS = (30, 14, 7)


@dataclass
class ProbeResult:
    origin: str
    findings: list[Finding] = field(default_factory=list)
    # https: the expiry of the first certificate the archive presented.
    tls_expires_at: datetime | None = None

    @property
    def outcome(self) -> CheckOutcome:
        outcomes = {finding.outcome for finding in self.findings}
        return next((o for o in SEVERITY if o in outcomes), CheckOutcome.OK)

    def add(
        self,
        code: str,
        message: str,
        outcome: CheckOutcome = CheckOutcome.OK,
        said: tuple[str, ...] = (),
    ) -> None:
        """One finding; ``said``: the archive's texts ``message`` repeats."""
        self.findings.append(
            Finding(code, message, outcome, tuple(t for t in said if t))
        )


Fetch = Callable[..., client.Response]


def probe(
    qido_url: str,
    wado_url: str,
    origin: str,
    *,
    needs_credentials: bool = False,
    fetch: Fetch = client.fetch,
    limits: client.Limits | None = None,
    pacsbin_proxy: Mapping[str, Any] | None = None,
) -> ProbeResult:
    """Probe one archive for one origin, as the uploader's browser would.

    ``pacsbin_proxy``: the server's proxy settings when the URLs are Pacsbin's
    proxy. The proxy has no /metadata route, so the retrieve step then fetches
    one instance found by QIDO (series, then instances); and a search that
    fails while the proxy itself answers means the archive refused the proxy,
    said in its own finding."""
    result = ProbeResult(origin=origin)

    def get(url: str, **kwargs: Any) -> client.Response | None:
        try:
            response = fetch(url=url, limits=limits, **kwargs)
        except client.FetchError as exc:
            _transport_finding(result, url, exc)
            return None
        expires = getattr(response, "tls_expires_at", None)
        if expires is not None and result.tls_expires_at is None:
            result.tls_expires_at = expires
            check_certificate_expiry(result, url, expires)
        return response

    studies = f"{qido_url}/studies"
    preflight = get(method="OPTIONS", headers=_preflight_headers(origin), url=studies)
    if preflight is None:
        return result
    check_preflight(result, preflight, origin, needs_credentials, "QIDO search")

    search_kwargs: dict[str, Any] = {
        "method": "GET",
        "url": f"{studies}?limit=1",
        "headers": {"Origin": origin, "Accept": DICOM_JSON},
        "follow_redirects": True,
    }
    search: client.Response | None
    if pacsbin_proxy is not None:
        try:
            search = fetch(limits=limits, **search_kwargs)
        except client.FetchError as exc:
            if exc.kind != "timeout":
                _transport_finding(result, studies, exc)
                return result
            # The proxy answered its preflight, then waits on the archive
            # for ever: what it does when the archive aborts its C-FIND.
            _archive_refused_proxy(
                result, pacsbin_proxy, qido_url, exc.message, said=exc.said
            )
            return result
        if search.status >= 500:
            _archive_refused_proxy(
                result,
                pacsbin_proxy,
                qido_url,
                f"The search answered HTTP {search.status}" + _error_text(search) + ".",
                said=_error_said(search),
            )
            check_cors(result, search, origin, needs_credentials, "qido", "search")
            return result
    else:
        search = get(**search_kwargs)
    if search is None:
        return result
    if search.redirects:
        result.add(
            "qido_redirect",
            f"{studies} redirects to {search.redirects[-1]}. Browsers do not follow "
            "redirects on a CORS preflight: register the final URL as the QIDO "
            "URL instead.",
            CheckOutcome.PREFLIGHT_FAILED,
            said=(search.redirects[-1],),
        )
    found = check_dicomweb(result, search, "qido", "QIDO search")
    cors_ok = check_cors(result, search, origin, needs_credentials, "qido", "search")
    if found is not None and cors_ok:
        result.add(
            "qido_ok",
            f"The QIDO search answered HTTP {search.status} with "
            f"{len(found)} stud{'y' if len(found) == 1 else 'ies'}, and the "
            f"browser on {origin} may read it.",
        )

    if cors_ok:
        error = get(
            method="GET",
            url=qido_url + ERROR_PROBE_PATH,
            headers={"Origin": origin, "Accept": DICOM_JSON},
        )
        if error is not None:
            check_error_headers(result, error, origin)

    study_uid = _first_study_uid(found)
    if study_uid is None:
        if found is not None:
            result.add(
                "wado_not_tested",
                "The search found no study the registry may see, so the WADO URL "
                "was not tried. Check it from your own browser once the archive "
                "has a study.",
            )
        return result
    if pacsbin_proxy is not None:
        _retrieve_one_instance(
            result, get, qido_url, wado_url, study_uid, origin, needs_credentials
        )
        return result
    metadata_url = f"{wado_url}/studies/{quote(study_uid, safe='')}/metadata"
    if wado_url != qido_url:
        wado_preflight = get(
            method="OPTIONS", headers=_preflight_headers(origin), url=metadata_url
        )
        if wado_preflight is None:
            return result
        check_preflight(
            result, wado_preflight, origin, needs_credentials, "WADO request", "wado_"
        )
    metadata = get(
        method="GET",
        url=metadata_url,
        headers={"Origin": origin, "Accept": DICOM_JSON},
    )
    if metadata is None:
        return result
    instances = check_dicomweb(result, metadata, "wado", "WADO-RS metadata request")
    wado_cors = check_cors(
        result, metadata, origin, needs_credentials, "wado", "WADO metadata"
    )
    if instances is not None and wado_cors:
        result.add(
            "wado_ok",
            f"The WADO-RS metadata of study {study_uid} came back "
            f"({len(instances)} instance(s)), readable from {origin}.",
        )
    return result


DICOM_MULTIPART = 'multipart/related; type="application/dicom"'


def _retrieve_one_instance(
    result: ProbeResult,
    get: Callable[..., client.Response | None],
    qido_url: str,
    wado_url: str,
    study_uid: str,
    origin: str,
    needs_credentials: bool,
) -> None:
    """The retrieve step through Pacsbin's proxy, which has no /metadata
    route: find one instance by QIDO (the study's series, then the series'
    instances) and retrieve it by WADO-RS, as the uploader does."""
    headers = {"Origin": origin, "Accept": DICOM_JSON}
    study = f"studies/{quote(study_uid, safe='')}"
    series = get(method="GET", url=f"{qido_url}/{study}/series", headers=headers)
    if series is None:
        return
    found = check_dicomweb(result, series, "wado_series", "QIDO series search")
    series_uid = _first_uid(found, "0020000E")
    if series_uid is None:
        if found is not None:
            result.add(
                "wado_not_tested",
                f"The series search of study {study_uid} found no series, so no "
                "instance was retrieved.",
            )
        return
    series_path = f"{study}/series/{quote(series_uid, safe='')}"
    instances = get(
        method="GET", url=f"{qido_url}/{series_path}/instances", headers=headers
    )
    if instances is None:
        return
    found = check_dicomweb(result, instances, "wado_instances", "QIDO instance search")
    sop_uid = _first_uid(found, "00080018")
    if sop_uid is None:
        if found is not None:
            result.add(
                "wado_not_tested",
                f"The instance search of series {series_uid} found no instance, "
                "so none was retrieved.",
            )
        return
    url = f"{wado_url}/{series_path}/instances/{quote(sop_uid, safe='')}"
    if wado_url != qido_url:
        preflight = get(method="OPTIONS", headers=_preflight_headers(origin), url=url)
        if preflight is None:
            return
        check_preflight(
            result, preflight, origin, needs_credentials, "WADO request", "wado_"
        )
    instance = get(
        method="GET", url=url, headers={"Origin": origin, "Accept": DICOM_MULTIPART}
    )
    if instance is None:
        return
    content_type = (instance.header("content-type") or "").split(";")[0].strip()
    if instance.status != 200 or content_type.lower() not in (
        "multipart/related",
        "application/dicom",
    ):
        result.add(
            "wado_instance_failed",
            f"The instance retrieve ({url}) answered HTTP {instance.status}"
            f"{_error_text(instance)}, not 200 with DICOM. The proxy found the "
            "instance by C-FIND but could not retrieve it: check that the archive "
            "allows the proxy's AE title to retrieve (C-GET, or C-MOVE with "
            "useCget false).",
            CheckOutcome.NOT_DICOMWEB,
            said=_error_said(instance),
        )
        check_cors(result, instance, origin, needs_credentials, "wado", "WADO")
        return
    if check_cors(result, instance, origin, needs_credentials, "wado", "WADO"):
        result.add(
            "wado_ok",
            f"Pacsbin's proxy has no WADO-RS metadata route, so the registry "
            f"retrieved one instance instead ({sop_uid}, found by QIDO): it came "
            f"back ({instance.status}, {content_type}), readable from {origin}.",
        )


def _archive_refused_proxy(
    result: ProbeResult,
    settings: Mapping[str, Any],
    qido_url: str,
    what: str,
    said: tuple[str, ...] = (),
) -> None:
    """The proxy answers, but its C-FIND to the archive fails: almost always
    the archive does not know the proxy's AE title."""
    if settings.get("mode") == "dicomweb":
        result.add(
            "proxy_forward_failed",
            f"Pacsbin's proxy at {qido_url} answers, but its search of the archive "
            f"failed. {what} Check that the proxy reaches the forwarding URL "
            f"({settings.get('forward_qido_url', '?')}) and that the archive's "
            "DICOMweb root is at / there.",
            CheckOutcome.UNREACHABLE,
            said=said,
        )
        return
    aet = settings.get("proxy_ae_title", "?")
    port = settings.get("proxy_dimse_port", "?")
    archive = (
        f"{settings.get('archive_ae_title', '?')} at "
        f"{settings.get('archive_host', '?')}, port {settings.get('archive_port', '?')}"
    )
    result.add(
        "proxy_archive_refused",
        f"Pacsbin's proxy at {qido_url} answers, but the archive did not answer "
        f"its search (C-FIND). {what} Almost always the archive refuses the "
        f"proxy because it does not know it. Fix: on the archive ({archive}), "
        f"register the proxy's AE title {aet} with the proxy's host and DIMSE "
        f"port {port}, allowed to query and retrieve (see the sheet for the "
        "archive's administrators). Then check that the archive's AE title, "
        "host and port in the proxy's config.jsonc are right.",
        CheckOutcome.UNREACHABLE,
        said=said,
    )


def _error_message(response: client.Response) -> str:
    """A proxy's JSON error message, cut short."""
    try:
        error = json.loads(response.body or b"null").get("error")
    except (ValueError, AttributeError, RecursionError):
        return ""
    return error[:200] if isinstance(error, str) else ""


def _error_text(response: client.Response) -> str:
    """A proxy's JSON error message, short, for a finding."""
    error = _error_message(response)
    return f" (“{error}”)" if error else ""


def _error_said(response: client.Response) -> tuple[str, ...]:
    return _said(response) + (_error_message(response),)


def _said(response: client.Response) -> tuple[str, ...]:
    """The answer's URL when the archive chose it by redirecting."""
    return (response.url,) if response.redirects else ()


def _first_uid(found: list[Any] | None, tag: str) -> str | None:
    try:
        uid = found[0][tag]["Value"][0]  # type: ignore[index]
    except (TypeError, KeyError, IndexError):
        return None
    return uid if isinstance(uid, str) and _UID.fullmatch(uid) else None


def check_certificate_expiry(
    result: ProbeResult, url: str, expires: datetime, now: datetime | None = None
) -> None:
    """A finding (not a failure) when the certificate expires within
    TLS_WARNING_DAYS[0] days."""
    left = expires - (now or datetime.now(UTC))
    if left.days >= TLS_WARNING_DAYS[0]:
        return
    result.add(
        "tls_expires_soon",
        f"The TLS certificate of {url.split('/')[2]} expires on "
        f"{expires:%Y-%m-%d %H:%M} UTC ({max(left.days, 0)} day(s) left). Renew "
        "it before then: browsers refuse an expired certificate, and the "
        "uploader stops working with this archive.",
    )


def _preflight_headers(origin: str) -> dict[str, str]:
    return {
        "Origin": origin,
        "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Headers": "accept, authorization",
    }


def _transport_finding(result: ProbeResult, url: str, exc: client.FetchError) -> None:
    outcome = _TRANSPORT_OUTCOMES.get(exc.kind, CheckOutcome.UNREACHABLE)
    code = {
        "blocked": "blocked",
        "tls": "tls_error",
        "too_large": "too_large",
        "redirect_off_origin": "qido_redirect_off_origin",
    }.get(exc.kind, f"unreachable_{exc.kind}")
    result.add(
        code,
        exc.message + _TRANSPORT_ADVICE.get(exc.kind, ""),
        outcome,
        said=exc.said,
    )


def check_preflight(
    result: ProbeResult,
    response: client.Response,
    origin: str,
    needs_credentials: bool,
    what: str,
    prefix: str = "",
) -> None:
    """Judge a preflight answer as a browser does."""
    url = response.url
    if not 200 <= response.status < 300:
        result.add(
            f"{prefix}preflight_refused",
            f"The archive answered the CORS preflight (OPTIONS {url}) with HTTP "
            f"{response.status}. Browsers send this preflight before a {what} "
            "that carries Authorization and need a 2xx answer with CORS headers "
            "(Access-Control-Allow-Origin, Access-Control-Allow-Headers listing "
            "Authorization). Fix: answer OPTIONS with 204 and those headers. "
            + FIX.removeprefix("Fix: "),
            CheckOutcome.PREFLIGHT_FAILED,
        )
        return
    allow_origin = response.header("access-control-allow-origin")
    failed = False
    if not allow_origin:
        result.add(
            f"{prefix}preflight_no_allow_origin",
            f"The CORS preflight (OPTIONS {url}) has no Access-Control-Allow-Origin "
            f"header, so browsers on {origin} refuse a {what} with Authorization. "
            + FIX,
            CheckOutcome.PREFLIGHT_FAILED,
        )
        failed = True
    elif allow_origin not in (origin, "*"):
        result.add(
            f"{prefix}preflight_origin_mismatch",
            f"The CORS preflight allows the origin {allow_origin}, not {origin}. "
            f"Add {origin} to the origins the archive or proxy allows.",
            CheckOutcome.CORS_ORIGIN_MISMATCH,
            said=(allow_origin,),
        )
        failed = True
    elif allow_origin == "*" and needs_credentials:
        result.add(
            f"{prefix}preflight_wildcard_with_credentials",
            "The CORS preflight answers Access-Control-Allow-Origin: *, which "
            "browsers refuse for requests with credentials (this archive needs "
            f"them). Echo the origin ({origin}) instead, with "
            "Access-Control-Allow-Credentials: true and Vary: Origin.",
            CheckOutcome.CREDENTIALS_MISCONFIGURED,
        )
        failed = True
    allowed_headers = {
        h.strip().lower()
        for h in (response.header("access-control-allow-headers") or "").split(",")
        if h.strip()
    }
    if "authorization" not in allowed_headers:
        why = (
            "lists * but a * never covers Authorization: list it by name"
            if "*" in allowed_headers
            else "does not list Authorization: add it"
        )
        result.add(
            f"{prefix}preflight_authorization_not_allowed",
            f"The CORS preflight's Access-Control-Allow-Headers {why} "
            "(Access-Control-Allow-Headers: Authorization, Accept, Content-Type).",
            CheckOutcome.PREFLIGHT_FAILED,
        )
        failed = True
    if needs_credentials and allow_origin != "*":
        failed |= _check_credentials(result, response, f"{prefix}preflight")
    if not failed:
        result.add(
            f"{prefix}preflight_ok",
            f"The CORS preflight for a {what} with Authorization is answered "
            f"correctly for {origin}.",
        )


def check_dicomweb(
    result: ProbeResult, response: client.Response, prefix: str, what: str
) -> list[Any] | None:
    """The JSON array of a valid DICOMweb answer, or None (with a finding).

    A valid answer is 200 with a JSON array, or 204 with no body (an empty
    search), as application/dicom+json or application/json.
    """
    url = response.url
    if response.status in (401, 403):
        result.add(
            f"{prefix}_needs_login",
            f"The {what} ({url}) answered HTTP {response.status}: the archive "
            "wants a login, which the registry does not have, so it could not "
            "confirm a DICOMweb answer. Run the check from your own browser, "
            "signed in.",
            said=_said(response),
        )
        return None
    if response.status == 204:
        return []
    if response.status != 200:
        result.add(
            f"{prefix}_bad_status",
            f"The {what} ({url}) answered HTTP {response.status}, not 200. "
            "Check that the URL is the archive's DICOMweb root (the one that "
            "/studies is appended to).",
            CheckOutcome.NOT_DICOMWEB,
            said=_said(response),
        )
        return None
    content_type = (response.header("content-type") or "").split(";")[0].strip()
    if content_type.lower() not in (DICOM_JSON, "application/json"):
        result.add(
            f"{prefix}_bad_content_type",
            f"The {what} ({url}) answered with content type "
            f"{content_type or '(none)'}, not {DICOM_JSON}. This URL does not "
            "look like a DICOMweb root: check it.",
            CheckOutcome.NOT_DICOMWEB,
            said=(*_said(response), content_type),
        )
        return None
    try:
        data = json.loads(response.body or b"null")
    except RecursionError:
        result.add(
            f"{prefix}_json_too_deep",
            f"The {what} ({url}) answered JSON nested too deeply to read; "
            "DICOMweb answers are a flat array of datasets. Check that the URL "
            "is the archive's DICOMweb root.",
            CheckOutcome.NOT_DICOMWEB,
            said=_said(response),
        )
        return None
    except ValueError:
        data = None
    if not isinstance(data, list):
        result.add(
            f"{prefix}_not_json_array",
            f"The {what} ({url}) did not answer a JSON array, as DICOMweb does. "
            "Check that the URL is the archive's DICOMweb root.",
            CheckOutcome.NOT_DICOMWEB,
            said=_said(response),
        )
        return None
    return data


def check_cors(
    result: ProbeResult,
    response: client.Response,
    origin: str,
    needs_credentials: bool,
    prefix: str,
    what: str,
) -> bool:
    """Judge the CORS headers of an actual (non-preflight) answer."""
    values = response.header_values("access-control-allow-origin")
    if not values:
        result.add(
            f"{prefix}_cors_missing",
            f"The {what} answer ({response.url}) has no Access-Control-Allow-Origin "
            f"header, so browsers on {origin} block it. " + FIX,
            CheckOutcome.CORS_MISSING,
            said=_said(response),
        )
        return False
    if len(values) > 1 or "," in values[0]:
        result.add(
            f"{prefix}_cors_duplicate",
            f"The {what} answer carries Access-Control-Allow-Origin more than once "
            f"({', '.join(values)}); browsers refuse that. Usually the archive and "
            "a proxy both add it: hide the archive's one in the proxy "
            "(nginx: proxy_hide_header).",
            CheckOutcome.CORS_ORIGIN_MISMATCH,
            said=(", ".join(values),),
        )
        return False
    value = values[0].strip()
    if value == "*":
        if needs_credentials:
            result.add(
                f"{prefix}_wildcard_with_credentials",
                f"The {what} answer has Access-Control-Allow-Origin: *, but this "
                "archive needs the user's credentials and browsers refuse * for "
                f"requests with credentials. Echo the origin ({origin}) instead, "
                "with Access-Control-Allow-Credentials: true and Vary: Origin.",
                CheckOutcome.CREDENTIALS_MISCONFIGURED,
            )
            return False
        return True
    if value != origin:
        result.add(
            f"{prefix}_cors_origin_mismatch",
            f"The {what} answer allows the origin {value}, not {origin}, so "
            f"browsers on {origin} block it. Add {origin} to the origins the "
            "archive or proxy allows (regenerate the fix-it configuration).",
            CheckOutcome.CORS_ORIGIN_MISMATCH,
            said=(*_said(response), value),
        )
        return False
    if needs_credentials:
        return not _check_credentials(result, response, prefix)
    return True


def _check_credentials(
    result: ProbeResult, response: client.Response, prefix: str
) -> bool:
    """True when a finding was added (credentials not allowed)."""
    if (response.header("access-control-allow-credentials") or "").strip() == "true":
        return False
    result.add(
        f"{prefix}_credentials_not_allowed",
        f"The answer ({response.url}) lacks Access-Control-Allow-Credentials: true, "
        "which browsers need before sending this archive the user's credentials. "
        "Add it (and Vary: Origin).",
        CheckOutcome.CREDENTIALS_MISCONFIGURED,
        said=_said(response),
    )
    return True


def check_error_headers(
    result: ProbeResult, response: client.Response, origin: str
) -> None:
    """Error answers need the CORS headers too, or a 404 looks like CORS."""
    if response.status < 400:
        return
    if response.header("access-control-allow-origin"):
        result.add(
            "errors_have_cors",
            f"Error answers (HTTP {response.status} for {response.url}) carry "
            "CORS headers too, so the uploader can show the real error.",
        )
        return
    result.add(
        "errors_lack_cors",
        f"Error answers (HTTP {response.status} for {response.url}) carry no CORS "
        f"headers, so in a browser on {origin} every 4xx or 5xx looks like a CORS "
        "failure and the uploader cannot show the real error. Searches still work. "
        "Fix: send the headers on every answer (nginx: add_header ... always; "
        "Apache: Header always set).",
    )


def _first_study_uid(found: list[Any] | None) -> str | None:
    return _first_uid(found, "0020000D")
