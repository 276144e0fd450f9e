"""OpenAPI documentation of REST API v1: every response and error, with
examples. Kept apart from the views so that they stay a few lines each."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiParameter,
    OpenApiResponse,
    PolymorphicProxySerializer,
    extend_schema,
    extend_schema_view,
)
from rest_framework.authentication import SessionAuthentication
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from integrations import auditexport

# Aliased: ``access`` below is this module's decorator for the view.
from integrations.api import access as access_question
from integrations.api import serializers as s
from integrations.api.auth import (
    JWT_AUDIENCE,
    ApiKeyAuthentication,
    UserTokenAuthentication,
)
from integrations.connectivity import proxyconfig
from integrations.models import (
    ApiKey,
    CheckOutcome,
    ConnectivityCheck,
    DicomWebServer,
    ServerHealth,
)


def _one_of(values: Any, last: str = "or") -> str:
    """``a, b or c``: a list of the code's own values in a sentence."""
    *rest, final = list(values)
    return f"{', '.join(rest)} {last} {final}" if rest else final


class ApiKeyScheme(OpenApiAuthenticationExtension):
    target_class = "integrations.api.auth.ApiKeyAuthentication"
    name = "ApiKey"

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        return {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": "Paste the key alone (the Authorize box sends it as "
            "the Authorization header), or send `Authorization: Api-Key <key>` "
            "or `X-Api-Key: <key>`; create a key with "
            "`python manage.py create_api_key NAME --scope "
            f"{'|'.join(ApiKey.Scope.values)}`.",
        }


class UserTokenScheme(OpenApiAuthenticationExtension):
    target_class = "integrations.api.auth.UserTokenAuthentication"
    name = "UserToken"

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        return {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "JWT",
            "description": "A JWT minted by the uploader's backend: HS256 with "
            "UPLOADER_JWT_SECRET, claims `email`, `iat`, `exp` and "
            f"`aud: {JWT_AUDIENCE}`; `exp - iat` at most "
            "UPLOADER_JWT_MAX_LIFETIME seconds (default one day). Asks only "
            "about its own email.",
        }


# --- Error bodies -------------------------------------------------------------

_FIELD_ERRORS = {
    "type": "object",
    "description": "DRF's usual shape: each bad field (or `detail`) with "
    "messages that name the bad value.",
    "additionalProperties": {
        "oneOf": [{"type": "array", "items": {"type": "string"}}, {"type": "string"}]
    },
}


def _error(description: str, example: dict[str, Any], body: Any = None) -> Any:
    return OpenApiResponse(
        response=body or s.DetailSerializer,
        description=description,
        examples=[OpenApiExample("error", value=example)],
    )


BAD_REQUEST = _error(
    "Invalid input; nothing was written.",
    {"name": ["This field is required."]},
    body=_FIELD_ERRORS,
)
UNAUTHENTICATED = _error(
    "No credentials, or an invalid, revoked or expired key or token.",
    {"detail": "Invalid, revoked or expired key."},
)
FORBIDDEN = _error(
    "Authenticated, but this credential may not do this (wrong scope).",
    {
        "detail": "This API key has scope 'access': it may only ask the access "
        "question (GET /api/v1/access). Reading or changing the registry needs "
        "a key of scope 'manage'."
    },
)
NOT_FOUND = _error(
    "No such object (or page).",
    {"detail": "No DicomWebServer matches the given query."},
)
THROTTLED = OpenApiResponse(
    response=s.DetailSerializer,
    description="Too many access questions for this key; retry after "
    "`Retry-After` seconds.",
    examples=[
        OpenApiExample(
            "throttled",
            value={
                "detail": "Request was throttled. Expected available in 12 seconds."
            },
        )
    ],
)

READ_ERRORS = {401: UNAUTHENTICATED, 403: FORBIDDEN, 404: NOT_FOUND}
RACE = _error(
    "A concurrent change got in the way (not a duplicate): try again.",
    {"detail": "The change conflicts with a concurrent one; try again."},
)
WRITE_ERRORS = {400: BAD_REQUEST, **READ_ERRORS}
LIST_ERRORS = {400: BAD_REQUEST, 401: UNAUTHENTICATED, 403: FORBIDDEN, 404: NOT_FOUND}

PAGE_SIZE = OpenApiParameter(
    "page_size",
    int,
    description="Items per page (default 50, at most 500; larger is capped).",
)

# --- The access question ------------------------------------------------------

_ANSWER_EXAMPLE: dict[str, Any] = {
    "email": "jane.doe@university.edu",
    "servers": [
        {
            "id": 7,
            "name": "University Hospital PACS",
            "institution": "University Hospital",
            "qido_url": "https://pacs.university.edu/dicomweb",
            "wado_url": "https://pacs.university.edu/dicomweb",
        }
    ],
}

_access_operation = extend_schema_view(
    get=extend_schema(
        operation_id="access",
        summary="Which DICOMweb servers may this user use?",
        description=(
            "Every `active` server the email is approved for, ordered by "
            "institution then name. With an API key (scope `access` or "
            "`manage`) ask with `?email=`; with a Bearer user token the email "
            "comes from the token (an `?email=` naming another address is a "
            "403). Matching ignores case and surrounding whitespace. Answers "
            "carry an `ETag`: send it back in `If-None-Match` and an unchanged "
            "answer is a 304 with no body."
        ),
        tags=["access"],
        parameters=[
            OpenApiParameter(
                "email",
                str,
                description="The user's Pacsbin account email (required with "
                "an API key; optional with a Bearer token).",
                examples=[OpenApiExample("email", value="jane.doe@university.edu")],
            ),
            OpenApiParameter(
                "format",
                str,
                enum=list(access_question.FORMATS),
                description="`ohif`: the same servers as OHIF Viewer v3 "
                "`dataSources` entries.",
            ),
            OpenApiParameter(
                "If-None-Match",
                str,
                location=OpenApiParameter.HEADER,
                description="The ETag of an earlier answer (or a list, or `*`).",
            ),
            OpenApiParameter(
                "ETag",
                str,
                location=OpenApiParameter.HEADER,
                response=[200, 304],
                description="A tag of this exact answer.",
            ),
            OpenApiParameter(
                "Retry-After",
                int,
                location=OpenApiParameter.HEADER,
                response=[429],
                description="Seconds until the key may ask again.",
            ),
        ],
        responses={
            200: OpenApiResponse(
                response=PolymorphicProxySerializer(
                    component_name="AccessAnswerOrOhif",
                    serializers=[s.AccessAnswerSerializer, s.OhifAnswerSerializer],
                    resource_type_field_name=None,
                ),
                description="The answer (`?format=ohif`: OHIF data sources).",
                examples=[
                    OpenApiExample("answer", value=_ANSWER_EXAMPLE),
                    OpenApiExample(
                        "ohif",
                        value=access_question.ohif_answer(
                            _ANSWER_EXAMPLE["email"], _ANSWER_EXAMPLE["servers"]
                        ),
                    ),
                ],
            ),
            304: OpenApiResponse(description="Not modified: the answer is unchanged."),
            400: _error(
                "A missing or malformed email (or format).",
                {"email": ["“jane@” is not a valid email address: …"]},
                body=_FIELD_ERRORS,
            ),
            401: UNAUTHENTICATED,
            403: _error(
                "A Bearer token asking about another email.",
                {"detail": "A Bearer token may only ask about its own email."},
            ),
            429: THROTTLED,
        },
    )
)


class _AccessOperation(APIView):
    """What drf-spectacular reads to document ``views.access_question``, a
    plain Django view: its credentials and, through ``_access_operation``,
    its parameters, answers and errors. Never serves a request."""

    authentication_classes = [
        ApiKeyAuthentication,
        UserTokenAuthentication,
        SessionAuthentication,
    ]

    def get(self, request: Request) -> Response:
        raise NotImplementedError


def access(view: Callable[..., Any]) -> Callable[..., Any]:
    """Document a function view as the access question's operation: the
    schema generator takes any callback with a ``cls`` for a DRF view."""
    view.cls = _access_operation(_AccessOperation)  # type: ignore[attr-defined]
    view.initkwargs = {}  # type: ignore[attr-defined]
    return view


health = extend_schema_view(
    get=extend_schema(
        operation_id="health",
        summary="Is the registry up? (no authentication)",
        tags=["health"],
        auth=[],
        responses={
            200: OpenApiResponse(
                s.HealthSerializer,
                description="The database answers. `cache` is the shared "
                "cache's state (Redis): when it is `unavailable` the registry "
                "still answers, counting throttles per process.",
                examples=[
                    OpenApiExample("ok", value={"status": "ok", "cache": "ok"}),
                    OpenApiExample(
                        "cache down",
                        value={"status": "ok", "cache": "unavailable"},
                    ),
                ],
            ),
            503: OpenApiResponse(
                s.HealthSerializer,
                description="The database does not answer (with `Retry-After`).",
                examples=[
                    OpenApiExample(
                        "unavailable",
                        value={"status": "unavailable", "cache": "ok"},
                        status_codes=[503],
                    )
                ],
            ),
        },
    )
)

# --- Management ---------------------------------------------------------------

_INSTITUTION = {
    "id": 3,
    "name": "University Hospital",
    "contact_name": "Ada Admin",
    "contact_email": "pacs-team@university.edu",
    "notes": "",
}
_SERVER = {
    "id": 7,
    "institution": 3,
    "name": "University Hospital PACS",
    "qido_url": "https://pacs.university.edu/dicomweb",
    "wado_url": "https://pacs.university.edu/dicomweb",
    "status": DicomWebServer.Status.ACTIVE.value,
    "cors_mode": DicomWebServer.CorsMode.REVERSE_PROXY.value,
    "needs_credentials": False,
    "pacsbin_proxy": None,
    "edge_enforced": False,
    "notes": "",
}


def _crud(
    noun: str,
    serializer: Any,
    example: dict[str, Any],
    list_parameters: list[Any],
    destroy_errors: dict[int, Any] | None = None,
) -> Any:
    examples = [OpenApiExample(noun, value=example)]
    a_noun = f"{'an' if noun[0] in 'aeiou' else 'a'} {noun}"
    tags = [f"{noun}s"]
    return extend_schema_view(
        list=extend_schema(
            summary=f"List {noun}s (paginated)",
            tags=tags,
            parameters=[*list_parameters, PAGE_SIZE],
            responses={200: serializer, **LIST_ERRORS},
            examples=examples,
        ),
        create=extend_schema(
            summary=f"Create {a_noun}",
            tags=tags,
            responses={
                201: serializer,
                400: BAD_REQUEST,
                401: UNAUTHENTICATED,
                403: FORBIDDEN,
                409: RACE,
            },
            examples=examples,
        ),
        retrieve=extend_schema(
            summary=f"Read {a_noun}",
            tags=tags,
            responses={200: serializer, **READ_ERRORS},
            examples=examples,
        ),
        partial_update=extend_schema(
            summary=f"Change {a_noun}",
            tags=tags,
            responses={200: serializer, **WRITE_ERRORS, 409: RACE},
            examples=examples,
        ),
        destroy=extend_schema(
            summary=f"Delete {a_noun}",
            tags=tags,
            responses={204: None, **READ_ERRORS, **(destroy_errors or {})},
        ),
    )


institutions = _crud(
    "institution",
    s.InstitutionSerializer,
    _INSTITUTION,
    [OpenApiParameter("search", str, description="Part of the name, any case.")],
    destroy_errors={
        409: _error(
            "The institution still has servers: delete or move them first.",
            {
                "detail": "“University Hospital” still has 2 DICOMweb server(s); "
                "delete them or move them to another institution first."
            },
        )
    },
)

servers = _crud(
    "server",
    s.DicomWebServerSerializer,
    _SERVER,
    [
        OpenApiParameter("institution", int, description="Only this institution's."),
        OpenApiParameter(
            "status",
            str,
            enum=DicomWebServer.Status.values,
            description="Only servers in this status.",
        ),
    ],
)

_SERVER_ID = OpenApiParameter(
    "server_id", int, location=OpenApiParameter.PATH, description="The server's id."
)

approved_users = extend_schema_view(
    get=extend_schema(
        summary="List a server's approved users (paginated)",
        tags=["approved users"],
        parameters=[
            _SERVER_ID,
            OpenApiParameter("search", str, description="Part of the email, any case."),
            PAGE_SIZE,
        ],
        responses={200: s.ApprovedUserSerializer(many=True), **LIST_ERRORS},
    ),
    post=extend_schema(
        summary="Approve emails in bulk (all or nothing)",
        description="Any invalid email: 400 naming every invalid one (by "
        "position and value) and nothing is written. Emails already approved "
        "are reported under `existing`. With `expires_at` (ISO 8601; null: "
        "never) or `days` (not both), every email named ends then, the "
        "existing ones too (re-approving someone for 90 days renews them); "
        "a date in the past, more than 3650 days away or not a date: 400 "
        "naming the value, nothing written. Without either, new approvals "
        "never end and existing ones keep their end.",
        tags=["approved users"],
        parameters=[_SERVER_ID],
        request=s.BulkEmailsSerializer,
        responses={
            200: OpenApiResponse(
                s.BulkAddResultSerializer,
                description="What was added and what was there already.",
            ),
            **WRITE_ERRORS,
        },
        examples=[
            OpenApiExample(
                "emails",
                value={
                    "emails": ["Jane.Doe@University.edu", "john.roe@university.edu"]
                },
                request_only=True,
            ),
            OpenApiExample(
                "for 90 days",
                value={"emails": ["Jane.Doe@University.edu"], "days": 90},
                request_only=True,
            ),
            OpenApiExample(
                "until a date",
                value={
                    "emails": ["Jane.Doe@University.edu"],
                    "expires_at": "2027-03-31T23:59:59Z",
                },
                request_only=True,
            ),
            OpenApiExample(
                "result",
                value={
                    "added": ["Jane.Doe@university.edu"],
                    "existing": ["john.roe@university.edu"],
                },
                response_only=True,
            ),
        ],
    ),
)

approved_user = extend_schema_view(
    delete=extend_schema(
        summary="Remove one approved user",
        description="The email in the path is matched like everywhere else "
        "(case and surrounding whitespace ignored); URL-encode it.",
        tags=["approved users"],
        parameters=[
            _SERVER_ID,
            OpenApiParameter(
                "email",
                str,
                location=OpenApiParameter.PATH,
                description="The approved email.",
            ),
        ],
        responses={204: None, 400: BAD_REQUEST, **READ_ERRORS},
    )
)

_CHECK_EXAMPLE = {
    "id": 12,
    "created_at": "2026-11-28T09:30:00Z",
    "source": ConnectivityCheck.Source.SERVER.value,
    "origin": "https://pacsbin.com",
    "outcome": CheckOutcome.CORS_MISSING.value,
    "findings": [
        {
            "code": CheckOutcome.CORS_MISSING.value,
            "message": "The archive answered the QIDO search but sent no "
            "Access-Control-Allow-Origin header: the browser blocks it. Add the "
            "header on the archive, or put the fix-it reverse proxy in front.",
        }
    ],
}


def checks(view: Any) -> Any:
    return extend_schema_view(
        get=extend_schema(
            summary="List a server's connectivity checks, newest first",
            tags=["connectivity"],
            parameters=[_SERVER_ID, PAGE_SIZE],
            responses={200: s.ConnectivityCheckSerializer(many=True), **LIST_ERRORS},
        ),
        post=extend_schema(
            summary="Run a connectivity check now",
            description="Probes the server from the registry: a CORS preflight "
            "for a QIDO search carrying Authorization, the QIDO search itself "
            "and, when a study comes back, a WADO-RS metadata request. "
            "Private and loopback addresses are refused (`blocked`) unless "
            "the deployment sets CONNECTIVITY_ALLOW_PRIVATE=1.",
            tags=["connectivity"],
            parameters=[_SERVER_ID],
            request=s.RunCheckSerializer,
            responses={
                201: OpenApiResponse(
                    s.ConnectivityCheckSerializer,
                    description="The check, as recorded.",
                    examples=[
                        OpenApiExample(
                            "check", value=_CHECK_EXAMPLE, response_only=True
                        )
                    ],
                ),
                **WRITE_ERRORS,
            },
        ),
    )(view)


def proxy_config(view: Any) -> Any:
    return extend_schema_view(
        get=extend_schema(
            summary="The fix-it reverse-proxy configuration, ready to paste",
            description=f"`kind` is {_one_of(proxyconfig.ALL_KINDS)}. For nginx, "
            "apache and caddy: a reverse proxy to the archive that answers "
            "preflights and adds the CORS headers for the uploader's origins, on "
            "error answers too. For pacsbin: a `config.jsonc` for Pacsbin's own "
            "proxy, from the server's `pacsbin_proxy` settings (409 naming what "
            "is missing when it has none, or when its dicomweb mode cannot reach "
            "an archive whose DICOMweb root has a path).",
            tags=["connectivity"],
            parameters=[
                _SERVER_ID,
                OpenApiParameter(
                    "kind",
                    str,
                    location=OpenApiParameter.PATH,
                    enum=list(proxyconfig.ALL_KINDS),
                    description="The proxy software.",
                ),
            ],
            responses={
                (200, "text/plain"): OpenApiResponse(
                    OpenApiTypes.STR, description="The configuration text."
                ),
                **READ_ERRORS,
                409: _error(
                    "A URL of the server was stored before the URL rule and "
                    "breaks it: no configuration is written until it is "
                    "corrected. For pacsbin: the server has no pacsbin_proxy "
                    "settings (the message names what is missing), or the "
                    "proxy cannot reach the archive as configured.",
                    {
                        "detail": "No configuration for “Main PACS”: its QIDO "
                        "URL breaks the URL rule. “http://pacs/dicom;web” is "
                        "not a usable DICOMweb URL: the path contains “;”, "
                        "which a DICOMweb URL may not hold (allowed: letters, "
                        "digits, -._~/, %XX escapes and !&()*+,=:@). Correct "
                        "the QIDO URL first."
                    },
                ),
            },
        )
    )(view)


_HEALTH_EXAMPLE = {
    "state": "failing",
    "since": "2026-03-02T08:15:00Z",
    "last_checked_at": "2026-03-02T08:30:04Z",
    "last_ok_at": "2026-03-02T08:00:03Z",
    "outcome": "cors_missing",
    "tls_expires_at": "2026-05-30T23:59:59Z",
    "capabilities": {},
}


def server_health(view: Any) -> Any:
    return extend_schema_view(
        get=extend_schema(
            summary="What monitoring knows of a server",
            description="The registry re-checks every active server it can reach "
            "on a schedule. `state` is "
            f"{_one_of(ServerHealth.State.values)}: `unknown` until the first "
            "scheduled checks, `unmonitored` when the registry cannot reach the "
            "archive (inside a hospital network: the check from the contact's "
            "browser is the only one). `capabilities` is `{}` until a successful "
            "check learns them.",
            tags=["connectivity"],
            parameters=[_SERVER_ID],
            responses={
                200: OpenApiResponse(
                    s.ServerHealthSerializer,
                    description="The server's health.",
                    examples=[
                        OpenApiExample(
                            "failing", value=_HEALTH_EXAMPLE, response_only=True
                        )
                    ],
                ),
                **READ_ERRORS,
            },
        ),
    )(view)


# --- The gate -------------------------------------------------------------------


class _VerifyOperation(APIView):
    """What drf-spectacular reads to document ``edge_views.verify`` (a plain
    Django view). Never serves a request."""

    authentication_classes: list[Any] = []

    def get(self, request: Request) -> Response:
        raise NotImplementedError


_verify_operation = extend_schema_view(
    get=extend_schema(
        operation_id="edge_verify",
        summary="May this request through the archive's edge? (for edges)",
        description="Called by the archive's reverse proxy on every DICOMweb "
        "request of a server with `edge_enforced` (nginx `auth_request`, Caddy "
        "`forward_auth`, Traefik ForwardAuth, Envoy ext_authz): the edge sends "
        "its `X-Edge-Key` and forwards the browser's `Authorization: Bearer "
        "<token>` (the `access_token` of the access answer). 204 when the token "
        "is for this server, the email still approved and the server active; "
        "`Cache-Control: max-age=<EDGE_CACHE_SECONDS>, "
        "stale-if-error=<EDGE_GRACE_SECONDS>` says how long the edge may keep "
        "the decision. Refusals are `no-store`. Any method answers alike.",
        tags=["gate"],
        auth=[],
        parameters=[
            OpenApiParameter(
                "X-Edge-Key",
                str,
                location=OpenApiParameter.HEADER,
                required=True,
                description="The server's edge key (POST …/edge-key).",
            ),
            OpenApiParameter(
                "Authorization",
                str,
                location=OpenApiParameter.HEADER,
                description="`Bearer <token>`, as the browser sent it.",
            ),
            OpenApiParameter(
                "X-Pacsbin-Email",
                str,
                location=OpenApiParameter.HEADER,
                response=[204],
                description="The approved user, for the edge's log.",
            ),
            OpenApiParameter(
                "WWW-Authenticate",
                str,
                location=OpenApiParameter.HEADER,
                response=[401],
                description='`Bearer realm="pacsbin-edge"`.',
            ),
        ],
        responses={
            204: OpenApiResponse(description="Granted."),
            401: _error(
                "A missing, malformed or expired token (or one the registry "
                "did not sign).",
                {"detail": "The token has expired."},
            ),
            403: _error(
                "A bad edge key, another server's token, an approval that is "
                "gone or expired, or a server that is not active.",
                {"detail": "The email is not (or no longer) approved."},
            ),
        },
    )
)


class _JwksOperation(APIView):
    """What drf-spectacular reads to document ``edge_views.jwks``."""

    authentication_classes: list[Any] = []

    def get(self, request: Request) -> Response:
        raise NotImplementedError


_JWK = {
    "type": "object",
    "properties": {
        "kty": {"type": "string", "enum": ["EC"]},
        "crv": {"type": "string", "enum": ["P-256"]},
        "x": {"type": "string"},
        "y": {"type": "string"},
        "kid": {"type": "string"},
        "use": {"type": "string", "enum": ["sig"]},
        "alg": {"type": "string", "enum": ["ES256"]},
    },
    "required": ["kty", "crv", "x", "y", "kid", "use", "alg"],
}
_jwks_operation = extend_schema_view(
    get=extend_schema(
        operation_id="edge_jwks",
        summary="The public keys of edge tokens (JWKS, no authentication)",
        description="A JWK Set (RFC 7517) of the keys whose tokens may still be "
        "alive: the current key and, after a rotation, the old one until its "
        "last token has expired. `kid` is the key's RFC 7638 thumbprint, as in "
        "each token's header. May be cached for a minute.",
        tags=["gate"],
        auth=[],
        responses={
            (200, "application/jwk-set+json"): OpenApiResponse(
                {
                    "type": "object",
                    "properties": {"keys": {"type": "array", "items": _JWK}},
                    "required": ["keys"],
                },
                description="The published keys.",
            )
        },
    )
)


def edge_jwks(view: Callable[..., Any]) -> Callable[..., Any]:
    view.cls = _jwks_operation(_JwksOperation)  # type: ignore[attr-defined]
    view.initkwargs = {}  # type: ignore[attr-defined]
    return view


def edge_verify(view: Callable[..., Any]) -> Callable[..., Any]:
    view.cls = _verify_operation(_VerifyOperation)  # type: ignore[attr-defined]
    view.initkwargs = {}  # type: ignore[attr-defined]
    return view


def edge_key(view: Any) -> Any:
    return extend_schema_view(
        post=extend_schema(
            summary="Create or replace the server's edge key",
            description="A new key for the server's edge (`<server id>.<secret>`, "
            "shown once, stored hashed); the old one stops working at once. "
            "Answers the nginx and Caddy configurations with the gate and the "
            "key in place, ready after the usual listen, name and certificate "
            "edits. `GET …/proxy-config/{kind}` never shows a key.",
            tags=["gate"],
            parameters=[_SERVER_ID],
            request=None,
            responses={
                201: OpenApiResponse(
                    s.EdgeKeySerializer,
                    description="The key and the ready configurations.",
                    examples=[
                        OpenApiExample(
                            "key",
                            value={
                                "edge_key": "7.kq3…",
                                "configs": {"nginx": "…", "caddy": "…"},
                            },
                            response_only=True,
                        )
                    ],
                ),
                **READ_ERRORS,
                409: _error(
                    "A URL of the server breaks the URL rule: no configuration.",
                    {"detail": "No configuration for “Main PACS”: …"},
                ),
            },
        )
    )(view)


# --- The audit export -------------------------------------------------------------

_AUDIT_ROW = {
    "type": "object",
    "properties": {
        "at": {"type": "string", "format": "date-time"},
        "actor": {
            "type": "string",
            "description": "A staff username, `api-key:NAME (created by …)`, "
            "another label (a command, the contact), or empty; for `used`, "
            "the token's email.",
        },
        "action": {"type": "string", "enum": ["created", "changed", "deleted", "used"]},
        "object_type": {
            "type": "string",
            "enum": ["institution", "server", "approved_user", "edge_usage"],
        },
        "object_id": {"type": "integer"},
        "server": {"type": "integer", "nullable": True},
        "email": {"type": "string"},
        "before": {"type": "object", "nullable": True, "additionalProperties": {}},
        "after": {"type": "object", "nullable": True, "additionalProperties": {}},
    },
    "required": list(auditexport.COLUMNS),
}
_AUDIT_EXAMPLE = {
    "next": "https://registry.example.org/api/v1/audit/?server=7&cursor=WyIyMDI2…",
    "results": [
        {
            "at": "2026-03-02T08:15:00.123456Z",
            "actor": "api-key:deploy-bot (created by alice)",
            "action": "changed",
            "object_type": "server",
            "object_id": 7,
            "server": 7,
            "email": "",
            "before": {"status": "pending"},
            "after": {"status": "active"},
        },
        {
            "at": "2026-03-03T00:00:00Z",
            "actor": "jane.doe@university.edu",
            "action": "used",
            "object_type": "edge_usage",
            "object_id": 311,
            "server": 7,
            "email": "jane.doe@university.edu",
            "before": None,
            "after": {
                "day": "2026-03-03",
                "granted": 42,
                "refused": 0,
                "last_used_at": "2026-03-03T16:22:05Z",
            },
        },
    ],
}


def audit(view: Any) -> Any:
    def when(name: str, meaning: str) -> OpenApiParameter:
        return OpenApiParameter(
            name,
            str,
            description=f"An ISO 8601 date (`2026-03-02`) or date-time "
            f"(`2026-03-02T08:15:00Z`; UTC without an offset): {meaning}",
        )

    return extend_schema_view(
        get=extend_schema(
            operation_id="audit_export",
            summary="The audit export: every change, and the gate's daily use",
            description="Every change to institutions, servers and approved "
            "users (who, when, before and after) and the gate's use per server, "
            "email and day, oldest first. `created` rows have the new object in "
            "`after`, `deleted` rows the last state in `before`, `changed` rows "
            "only the fields that changed; a `used` row stands for a whole UTC "
            "day (`at` is its midnight). JSON: a page of `results` and `next`, "
            "the URL of the next page (null after the last; follow it, its "
            "cursor is opaque). `format=csv`: every row at once, streamed, with "
            "the same columns (before/after as JSON), formula-safe (a cell "
            "starting with = + - @, a tab or a carriage return gets a leading "
            "apostrophe). An id that matches nothing (a deleted server's "
            "included) is no error: its history, if any. Needs a key of scope "
            "`manage`, or a staff session with view on institutions, servers "
            "and approved users.",
            tags=["audit"],
            parameters=[
                OpenApiParameter(
                    "institution",
                    int,
                    description="The institution, its servers (also those it "
                    "had), their approvals and use.",
                ),
                OpenApiParameter(
                    "server", int, description="The server, its approvals and use."
                ),
                OpenApiParameter(
                    "email",
                    str,
                    description="Approvals of this email and its use (matched "
                    "as the access question matches).",
                ),
                when("since", "rows at or after it (a date: from its start)."),
                when("until", "rows before it (a date: to its end, inclusive)."),
                OpenApiParameter(
                    "format", str, enum=["json", "csv"], description="Default json."
                ),
                OpenApiParameter(
                    "cursor", str, description="Given in `next`; do not build it."
                ),
                PAGE_SIZE,
            ],
            responses={
                (200, "application/json"): OpenApiResponse(
                    {
                        "type": "object",
                        "properties": {
                            "next": {
                                "type": "string",
                                "format": "uri",
                                "nullable": True,
                            },
                            "results": {"type": "array", "items": _AUDIT_ROW},
                        },
                        "required": ["next", "results"],
                    },
                    description="A page of rows, oldest first.",
                    examples=[OpenApiExample("page", value=_AUDIT_EXAMPLE)],
                ),
                (200, "text/csv"): OpenApiResponse(
                    OpenApiTypes.STR,
                    description="`format=csv`: every row, streamed as an "
                    "attachment; the header is "
                    "`at,actor,action,object_type,object_id,server,email,before,after`.",
                ),
                400: _error(
                    "A bad filter, format, page size or cursor; each named.",
                    {
                        "since": [
                            "“yesterday” is not an ISO 8601 date or date-time: "
                            "write 2026-03-02 or 2026-03-02T08:15:00Z."
                        ]
                    },
                    body=_FIELD_ERRORS,
                ),
                401: UNAUTHENTICATED,
                403: FORBIDDEN,
            },
        )
    )(view)


# --- Access reviews ---------------------------------------------------------------


def access_review(view: Any) -> Any:
    return extend_schema_view(
        post=extend_schema(
            summary="Start an access review of the server now",
            description="Mails the institution's confirmed contact a private "
            "link to review the server's approved emails (README, Access "
            "reviews), as the schedule does every `ACCESS_REVIEW_DAYS`. The "
            "review is due `ACCESS_REVIEW_GRACE_DAYS` later. Scope `manage` (or "
            "staff allowed to add access reviews). 409 when the server already "
            "has an open review, or when its institution has no confirmed "
            "contact (the message says which).",
            tags=["access reviews"],
            parameters=[_SERVER_ID],
            request=None,
            responses={
                201: OpenApiResponse(
                    s.AccessReviewSerializer,
                    description="The review, sent.",
                    examples=[
                        OpenApiExample(
                            "sent",
                            value={
                                "id": 12,
                                "server": 7,
                                "state": "sent",
                                "sent_to": "it@hospital.example",
                                "started_by": "api-key:deploy-bot",
                                "created_at": "2026-01-05T10:00:00Z",
                                "due_at": "2026-02-04T10:00:00Z",
                                "answered_at": None,
                                "note": "",
                                "kept_count": 0,
                                "removed": [],
                            },
                            response_only=True,
                        )
                    ],
                ),
                **READ_ERRORS,
                409: _error(
                    "An open review exists, or the server has no confirmed contact.",
                    {
                        "detail": "“Main PACS” already has an open access review; "
                        "it must be answered, expire or be cancelled before "
                        "another starts."
                    },
                ),
            },
        )
    )(view)
