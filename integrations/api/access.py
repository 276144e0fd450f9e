"""The access question: who may ask it, how often, and its answer.

Read in this order: ``urls.py`` routes ``/api/v1/access`` to
``views.access_question``, whose decorators (below) say who may ask and how
often; the answer comes from ``DicomWebServer.objects.approved_for`` (models.py),
run here as one SQL query compiled once per process.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache, wraps
from typing import Any
from urllib.parse import unquote, urlencode

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import InterfaceError, OperationalError, connections, router
from django.db.backends.base.base import BaseDatabaseWrapper
from django.http import HttpRequest, HttpResponse

# Public in Django (django/utils/cache.py), missing from django-stubs.
from django.utils.cache import parse_etags  # type: ignore[attr-defined]
from rest_framework.exceptions import AuthenticationFailed

from integrations.api.auth import (
    NOT_PROVIDED,
    ApiClient,
    ApiKeyAuthentication,
    UploaderUser,
    UserTokenAuthentication,
    challenge,
)
from integrations.api.throttling import AccessThrottle
from integrations.connectivity import capabilities
from integrations.edge import tokens
from integrations.models import DicomWebServer
from integrations.validators import email_key, normalize_email

Caller = ApiClient | UploaderUser | AbstractBaseUser
View = Callable[..., HttpResponse]

FORMATS = ("json", "ohif")
OHIF_NAMESPACE = "@ohif/extension-default.dataSourcesModule.dicomweb"
# What a staff session needs to ask (the admin shows it the same answers).
STAFF_PERMISSION = "integrations.view_approveduser"
_HEADERS = {"Cache-Control": "private, no-cache"}


class Refused(Exception):
    """An answer other than the servers: a JSON body with a status, as DRF
    shapes its errors (``{"detail": …}`` or ``{"field": [messages]}``)."""

    def __init__(
        self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(body)
        self.status = status
        self.body = body
        self.headers = headers or {}

    def response(self) -> HttpResponse:
        response = HttpResponse(
            render(self.body), status=self.status, content_type="application/json"
        )
        for name, value in self.headers.items():
            response[name] = value
        return response


# --- Who may ask, and how often (the view's decorators) -----------------------

_KEYS = ApiKeyAuthentication()
_TOKENS = UserTokenAuthentication()


def authorize(view: View) -> View:
    """Calls ``view(request, caller)`` for an API key (scope ``access`` or
    ``manage``), a Bearer user token, or an active staff session with
    ``integrations.view_approveduser``; anyone else gets 401 or 403. Also the
    place where a ``Refused`` raised below becomes its JSON answer."""

    @wraps(view)
    def authorized(request: HttpRequest) -> HttpResponse:
        try:
            return view(request, _caller(request))
        except Refused as refused:
            return refused.response()

    return authorized


def _caller(request: HttpRequest) -> Caller:
    try:
        # Api-Key first, then Bearer (REST_FRAMEWORK's order, so the same
        # header means the same caller on every endpoint).
        found = _KEYS.authenticate(request) or _TOKENS.authenticate(request)  # type: ignore[arg-type]
    except AuthenticationFailed as exc:
        raise _unauthenticated(request, str(exc.detail)) from None
    if found is not None:
        return found[0]
    user = request.user  # the session, from AuthenticationMiddleware
    if not (user.is_authenticated and user.is_active):
        raise _unauthenticated(request, NOT_PROVIDED)
    if not (user.is_staff and user.has_perm(STAFF_PERMISSION)):
        raise Refused(
            403, {"detail": "This credential may not ask the access question."}
        )
    return user


def _unauthenticated(request: HttpRequest, detail: str) -> Refused:
    headers = {"WWW-Authenticate": challenge(request)}  # type: ignore[arg-type]
    return Refused(401, {"detail": detail}, headers)


def read_only(view: View) -> View:
    """GET and HEAD only; anything else is a 405 before the throttle counts
    it (after authorize, so a caller without credentials still learns that
    first, as on the DRF endpoints)."""

    @wraps(view)
    def reading(request: HttpRequest, caller: Caller) -> HttpResponse:
        if request.method not in ("GET", "HEAD"):
            raise Refused(
                405,
                {"detail": f'Method "{request.method}" not allowed.'},
                {"Allow": "GET, HEAD"},
            )
        return view(request, caller)

    return reading


def throttle(view: View) -> View:
    """ACCESS_THROTTLE_RATE questions per caller (API key, Bearer email or
    staff user) and window, counted in the shared cache; past it, 429 with
    Retry-After."""

    @wraps(view)
    def throttled(request: HttpRequest, caller: Caller) -> HttpResponse:
        limiter = AccessThrottle()
        if not limiter.allow(AccessThrottle.caller_of(caller)):
            wait = limiter.wait() or 1
            unit = "second" if wait == 1 else "seconds"
            raise Refused(
                429,
                {
                    "detail": "Request was throttled. "
                    f"Expected available in {wait} {unit}."
                },
                {"Retry-After": str(wait)},
            )
        return view(request, caller)

    return throttled


# --- The question and its answer ----------------------------------------------


# A query string of printable ASCII (what a browser or client sends: anything
# else escaped as %XX), read as ``parse_qsl`` reads it.
_ASCII_QUERY = re.compile(r"[\x21-\x7e]*")


def query(request: HttpRequest) -> dict[str, str]:
    """The query string's parameters, the last value of each, exactly as
    ``request.GET.get`` reads them (Django's QueryDict, by ``parse_qsl``:
    pairs split on "&", "+" a space, %XX escapes UTF-8 with errors replaced).
    Read here for printable ASCII, without building a QueryDict (which costs
    more than the rest of reading the question); anything else is Django's
    to parse."""
    cached: dict[str, str] | None = getattr(request, "_access_query", None)
    if cached is not None:
        return cached
    text = request.META.get("QUERY_STRING", "")
    params: dict[str, str] = {}
    if text.count("&") < 100 and _ASCII_QUERY.fullmatch(text):
        for pair in text.split("&"):
            if pair:
                name, _, value = pair.partition("=")
                params[_unescaped(name)] = _unescaped(value)
    else:
        params = {name: request.GET[name] for name in request.GET}
    request._access_query = params  # type: ignore[attr-defined]
    return params


def _unescaped(text: str) -> str:
    if "+" in text:
        text = text.replace("+", " ")
    return unquote(text) if "%" in text else text


def if_none_match(request: HttpRequest) -> str:
    """The If-None-Match header, read without building ``request.headers``."""
    return request.META.get("HTTP_IF_NONE_MATCH", "")


def email_asked(request: HttpRequest, caller: Caller) -> str:
    """The normalised email the caller asks about: a Bearer token's own (and
    no other), else ``?email=``."""
    asked = query(request).get("email")
    if isinstance(caller, UploaderUser):
        if asked is not None and not _same_email(asked, caller.email):
            raise Refused(
                403, {"detail": "A Bearer token may only ask about its own email."}
            )
        return caller.email
    if asked is None:
        raise Refused(400, {"email": ["This parameter is required: ?email=<address>."]})
    try:
        return normalize_email(asked)
    except ValidationError as exc:
        raise Refused(400, {"email": exc.messages}) from None


def _same_email(asked: str, own: str) -> bool:
    try:
        return email_key(normalize_email(asked)) == email_key(own)
    except ValidationError:
        return False


def format_asked(request: HttpRequest) -> str:
    fmt = query(request).get("format", "json")
    if fmt not in FORMATS:
        raise Refused(400, {"format": [f"“{fmt}” is not a format: use json or ohif."]})
    return fmt


FIELDS = ("id", "name", "institution__name", "qido_url", "wado_url", "edge_enforced")


def rows(email: str) -> list[dict[str, Any]]:
    """``DicomWebServer.objects.approved_for(email).values(*FIELDS)``: one SQL
    query, compiled once per process (building the queryset costs more than
    running it); every call runs it, so it sees the registry as it is now.

    The statement goes straight to the driver's cursor, in the driver's own
    placeholder style, converted once: Django's SQLite cursor rewrites every
    ``%s`` to ``?`` with a regular expression on each call, which costs more
    than SQLite takes to answer. Where queries are being recorded (DEBUG, or
    a test counting them) or wrapped, Django's cursor runs the same SQL, so
    the count is the one production pays. On PostgreSQL psycopg prepares the
    statement on each connection after a few runs (server-side binding,
    settings.DATABASES)."""
    alias = router.db_for_read(DicomWebServer)
    query = _compiled(alias)
    params = list(query.params)
    params[query.position] = email_key(email)
    connection = connections[alias]
    if connection.queries_logged or connection.execute_wrappers:
        with connection.cursor() as cursor:
            cursor.execute(query.sql, params)
            found = cursor.fetchall()
    else:
        found = _fetch(connection, query.driver_sql, params)
    return [dict(zip(FIELDS, row, strict=True)) for row in found]


def _fetch(
    connection: BaseDatabaseWrapper, sql: str, params: list[Any]
) -> list[tuple[Any, ...]]:
    """Run ``sql`` on the driver's own cursor, with the checks and the error
    translation of Django's cursor.

    Django's cursor first checks that a connection kept from an earlier
    request still works (CONN_HEALTH_CHECKS), a round trip per request; here
    a kept connection that fails (the database restarted meanwhile: every
    worker thread's first answer was a 503) is replaced and the read run
    once more instead, which costs nothing while the connection is fine."""
    connection.validate_no_broken_transaction()
    kept = connection.connection is not None
    try:
        return _run(connection, sql, params)
    except (OperationalError, InterfaceError):
        if not kept or connection.in_atomic_block:
            raise
        connection.close()
        return _run(connection, sql, params)


def _run(
    connection: BaseDatabaseWrapper, sql: str, params: list[Any]
) -> list[tuple[Any, ...]]:
    """One statement on the driver cursor kept for this connection.

    A new psycopg cursor per answer costs about 70,000 instructions more than
    reusing one (measured with callgrind: 214k against 143k per read), most
    of the access answer's lead over the health check on PostgreSQL. The
    cursor belongs to the driver connection it was opened on (Django's
    connections are per thread); a new connection, or any error, opens a
    new one."""
    connection.ensure_connection()
    raw = connection.connection
    kept = getattr(connection, "_access_cursor", None)
    with connection.wrap_database_errors:
        if kept is None or kept[0] is not raw:
            kept = (raw, raw.cursor())
            connection._access_cursor = kept  # type: ignore[attr-defined]
        cursor = kept[1]
        try:
            cursor.execute(sql, params)
            return cursor.fetchall()
        except BaseException:
            connection._access_cursor = None  # type: ignore[attr-defined]
            cursor.close()
            raise


# Only a placeholder in the compiled SQL; it must pass the email rule, which
# refuses special-use domains such as .invalid.
_STAND_IN = "stand-in@access.example"
# A ``%s`` placeholder as Django writes them (``%%`` is a literal percent).
_FORMAT_PLACEHOLDER = re.compile(r"(?<!%)%s")


@dataclass(frozen=True)
class CompiledQuery:
    sql: str  # Django's placeholder style, for Django's cursor
    driver_sql: str  # the driver's own style, for its cursor
    params: tuple[Any, ...]  # plain values (no enum members)
    position: int  # where among the parameters the email key goes


@cache
def _compiled(alias: str) -> CompiledQuery:
    queryset = DicomWebServer.objects.approved_for(_STAND_IN).values(*FIELDS)
    sql, params = queryset.query.get_compiler(using=alias).as_sql()
    plain = tuple(str(value) if isinstance(value, str) else value for value in params)
    driver_sql = sql
    if connections[alias].vendor == "sqlite":  # qmark style, as its cursor does
        driver_sql = _FORMAT_PLACEHOLDER.sub("?", sql).replace("%%", "%")
    return CompiledQuery(sql, driver_sql, plain, plain.index(email_key(_STAND_IN)))


OHIF_FIELDS = (*FIELDS, "health__capabilities")


def answer(email: str, fmt: str = "json") -> dict[str, Any]:
    """Every active server ``email`` (normalised) may use; one SQL query."""
    if fmt == "ohif":
        return ohif_answer(email, ohif_servers(email))
    servers = [
        {
            "id": row["id"],
            "name": row["name"],
            "institution": row["institution__name"],
            "qido_url": row["qido_url"],
            "wado_url": row["wado_url"],
            **edge_token(email, row),
        }
        for row in rows(email)
    ]
    return {"email": email, "servers": servers}


def edge_token(email: str, row: dict[str, Any]) -> dict[str, str]:
    """For a server whose edge enforces the gate, the token its edge wants
    (reused while more than half its life is left: edge/tokens.py)."""
    if not row["edge_enforced"]:
        return {}
    token = tokens.token_for(email, row["id"])
    return {"access_token": token.value, "access_token_expires_at": token.expires_at}


def ohif_servers(email: str) -> list[dict[str, Any]]:
    """The servers with the capabilities learnt from each archive: the access
    query with a LEFT JOIN of ServerHealth, still one SQL query, and only for
    ``?format=ohif`` (the JSON answer's hot path stays as it is)."""
    found = DicomWebServer.objects.approved_for(email).values(*OHIF_FIELDS)
    return [
        {
            "id": row["id"],
            "name": row["name"],
            "institution": row["institution__name"],
            "qido_url": row["qido_url"],
            "wado_url": row["wado_url"],
            "capabilities": row["health__capabilities"],
            # Carried into the data source by ohif_answer (OHIF's own way).
            **edge_token(email, row),
        }
        for row in found
    ]


def ohif_answer(email: str, servers: list[dict[str, Any]]) -> dict[str, Any]:
    """OHIF Viewer v3 ``dataSources`` entries, one DICOMweb source per server,
    with the capabilities learnt from its archive (conservative values any
    DICOMweb archive meets where nothing was learnt)."""
    sources = [
        {
            "namespace": OHIF_NAMESPACE,
            "sourceName": f"pacsbin-{server['id']}",
            "configuration": {
                "friendlyName": f"{server['institution']} — {server['name']}",
                "name": server["name"],
                "qidoRoot": server["qido_url"],
                "wadoRoot": server["wado_url"],
                **capabilities.ohif_configuration(server.get("capabilities")),
            },
            **ohif_gate(f"pacsbin-{server['id']}", server),
        }
        for server in servers
    ]
    return {
        "email": email,
        "defaultDataSourceName": sources[0]["sourceName"] if sources else None,
        "dataSources": sources,
    }


# OHIF Viewer 3.13.2 (@ohif/app, read in its dist/: the mode route's
# ``lowerCaseSearchParams.get('token')`` -> updateAuthServiceAndCleanUrl ->
# userAuthenticationService.getAuthorizationHeader, which the DICOMweb data
# source puts on every QIDO and WADO request) takes a bearer token only as the
# viewer URL's ``token`` parameter: a data source's JSON cannot carry a header.
OHIF_TOKEN_PARAMETER = "token"


def ohif_gate(source_name: str, server: dict[str, Any]) -> dict[str, str]:
    """For a server behind the gate: its token, when it expires, and the query
    to open OHIF on this data source with it (``/viewer?StudyInstanceUIDs=…&``
    + viewerQuery), so OHIF sends ``Authorization: Bearer <token>``."""
    token = server.get("access_token")
    if not token:
        return {}
    return {
        "accessToken": token,
        "accessTokenExpiresAt": server["access_token_expires_at"],
        "viewerQuery": urlencode(
            {"datasources": source_name, OHIF_TOKEN_PARAMETER: token}
        ),
    }


def render(content: dict[str, Any]) -> bytes:
    """JSON as DRF's JSONRenderer writes it: compact, UTF-8, with U+2028 and
    U+2029 escaped for JavaScript."""
    text = json.dumps(content, ensure_ascii=False, separators=(",", ":"))
    return text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029").encode()


def respond(body: bytes, if_none_match: str) -> HttpResponse:
    """The answer with its ETag, or a 304 when the caller has it already."""
    tag = etag(body)
    if not_modified(if_none_match, tag):
        response = HttpResponse(status=304)
    else:
        response = HttpResponse(body, content_type="application/json")
    response["ETag"] = tag
    for name, value in _HEADERS.items():
        response[name] = value
    return response


def etag(body: bytes) -> str:
    """A strong ETag of the answer's bytes: it changes exactly when the answer
    does, with no bookkeeping on writes."""
    return '"' + hashlib.sha256(body).hexdigest()[:40] + '"'


def not_modified(if_none_match: str, current: str) -> bool:
    """RFC 9110 If-None-Match: ``*`` or any listed tag equal to ``current``.

    The comparison is the weak one the RFC prescribes for If-None-Match, so a
    proxy that weakens our tag when it compresses (W/"…") still gets a 304.
    """
    if not if_none_match.strip():
        return False
    tags = parse_etags(if_none_match)
    if tags == ["*"]:
        return True
    return any(tag.removeprefix("W/") == current for tag in tags)
