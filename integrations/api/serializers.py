"""The JSON shapes of REST API v1 (a contract: see DESIGN.md).

Writes are validated by the models' own rules (``full_clean``: the one URL
validator, the email normaliser, the case-insensitive uniqueness checks), so
the API accepts exactly what the admin accepts.
"""

from __future__ import annotations

import copy
from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import models
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from integrations import expiry
from integrations.inputs import escaped, parse_id
from integrations.models import (
    AccessReview,
    ApprovedUser,
    CheckOutcome,
    ConnectivityCheck,
    DicomWebServer,
    Institution,
    ServerHealth,
)
from integrations.monitoring import health
from integrations.validators import MAX_EMAIL_LENGTH, PROXY_KEYS, normalize_email

# One request may carry a whole institution (issue 6: 100,000 in under 20 s).
MAX_BULK_EMAILS = 100_000


class ModelRulesMixin:
    """Runs the model's ``full_clean`` on a copy holding the new values and
    keeps the values it normalised (trimmed names, normalised URLs)."""

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        model: type[models.Model] = self.Meta.model  # type: ignore[attr-defined]
        instance = self.instance  # type: ignore[attr-defined]
        candidate = copy.copy(instance) if instance is not None else model()
        for name, value in attrs.items():
            setattr(candidate, name, value)
        try:
            candidate.full_clean()
        except DjangoValidationError as exc:
            raise serializers.ValidationError(
                serializers.as_serializer_error(exc)
            ) from None
        return {name: getattr(candidate, name) for name in attrs}


class InstitutionSerializer(ModelRulesMixin, serializers.ModelSerializer):
    # The one email normaliser, whose messages name the value given.
    contact_email = serializers.CharField(
        required=False, allow_blank=True, max_length=MAX_EMAIL_LENGTH
    )

    class Meta:
        model = Institution
        fields = ["id", "name", "contact_name", "contact_email", "notes"]
        # Uniqueness (ignoring case) is the model's rule, checked in validate().
        validators: list[Any] = []

    def validate_contact_email(self, value: str) -> str:
        try:
            return normalize_email(value) if value else ""
        except DjangoValidationError as exc:
            raise serializers.ValidationError(exc.messages) from None


class InstitutionIdField(serializers.PrimaryKeyRelatedField):
    """An institution by id, with messages that name the value given."""

    def to_internal_value(self, data: Any) -> Institution:
        pk = parse_id(data)
        if pk is None and isinstance(data, int) and not isinstance(data, bool):
            # A whole number, but beyond any id the database holds.
            raise serializers.ValidationError(
                f"There is no institution with id {data}."
            )
        if pk is None:
            raise serializers.ValidationError(
                f"“{escaped(data, 50)}” is not an institution id (a whole number "
                "of at most 19 digits)."
            )
        institution = Institution.objects.filter(pk=pk).first()
        if institution is None:
            raise serializers.ValidationError(f"There is no institution with id {pk}.")
        return institution


class StrictBooleanField(serializers.BooleanField):
    """JSON true or false only: "yes", 1 or "off" are refused by name rather
    than guessed at."""

    def to_internal_value(self, data: Any) -> bool:
        if not isinstance(data, bool):
            raise serializers.ValidationError(
                f"“{data}” is not a boolean: send true or false."
            )
        return data


# Patterns as close to the rule as a regular expression gets (the rule,
# validators.normalize_pacsbin_proxy, has the last word and names the value).
_AE_TITLE = {
    "type": "string",
    "minLength": 1,
    "maxLength": 16,
    "pattern": r"^[ -\[\]-~]*[!-\[\]-~][ -\[\]-~]*$",
    "description": "1-16 printable ASCII characters, no backslash, not all spaces.",
}
# Supersets of the stored forms (lower-case DNS names, IPv4, IPv6 without
# brackets in a host, with brackets in a URL), so answers always match.
_DNS = r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*"
_HOST = {
    "type": "string",
    "maxLength": 253,
    "pattern": rf"^({_DNS}|[0-9a-f:.]+)$",
    "description": "A DNS name or an IP address (private ones are normal here).",
}
_PORT = {"type": "integer", "minimum": 1, "maximum": 65535}
_URL = {
    "type": "string",
    "maxLength": 2000,
    "pattern": rf"^https?://({_DNS}|\[[0-9a-f:.]+\])(:[0-9]{{1,5}})?"
    r"(/[A-Za-z0-9._~!&()*+,=:@%-]*)*$",
    "description": "A DICOMweb URL (the URL rule); the dicomweb mode needs the "
    "archive's DICOMweb root at / (no path) for a configuration.",
}
PACSBIN_PROXY_SCHEMA = {
    "oneOf": [
        {
            "type": "object",
            "title": "dimse",
            "description": "The archive speaks only DIMSE: the proxy serves "
            "DICOMweb and asks the archive by C-FIND and C-GET/C-MOVE.",
            "properties": {
                "mode": {"type": "string", "enum": ["dimse"]},
                "archive_ae_title": _AE_TITLE,
                "archive_host": _HOST,
                "archive_port": _PORT,
                "proxy_ae_title": _AE_TITLE,
                "proxy_dimse_port": _PORT,
            },
            "required": list(PROXY_KEYS["dimse"]),
            "additionalProperties": False,
        },
        {
            "type": "object",
            "title": "dicomweb",
            "description": "The archive has DICOMweb at the root of its "
            "address: the proxy forwards to it and adds the CORS headers.",
            "properties": {
                "mode": {"type": "string", "enum": ["dicomweb"]},
                "forward_qido_url": _URL,
                "forward_wado_url": _URL,
            },
            "required": list(PROXY_KEYS["dicomweb"]),
            "additionalProperties": False,
        },
    ],
    "nullable": True,
    "description": "Pacsbin's proxy settings: required when cors_mode is "
    "dimse_proxy (then qido_url and wado_url are the proxy's origin, no path); "
    "for any other cors_mode they are checked, then not kept (null).",
}


@extend_schema_field(PACSBIN_PROXY_SCHEMA)
class PacsbinProxyField(serializers.JSONField):
    """Any JSON value: the one rule (validators.normalize_pacsbin_proxy, run
    by the model's clean) judges it and names what is wrong."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(allow_null=True, required=False, **kwargs)


class DicomWebServerSerializer(ModelRulesMixin, serializers.ModelSerializer):
    pacsbin_proxy = PacsbinProxyField()
    institution = InstitutionIdField(
        queryset=Institution.objects.all(), help_text="The institution's id."
    )
    needs_credentials = StrictBooleanField(
        required=False,
        help_text="The archive needs the user's browser credentials (cookies, "
        "HTTP auth): CORS must then echo the origin with "
        "Access-Control-Allow-Credentials.",
    )
    edge_enforced = StrictBooleanField(
        required=False,
        help_text="The archive's edge refuses every DICOMweb request without a "
        "registry token for a user approved here; the access answer then "
        "carries access_token for this server (see the gate).",
    )

    class Meta:
        model = DicomWebServer
        fields = ["id", "institution", *DicomWebServer.EDITABLE_FIELDS]
        validators: list[Any] = []

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        # Moving a server off Pacsbin's proxy clears its settings, unless the
        # request says what they should be (then the model's rule answers).
        if (
            "cors_mode" in attrs
            and attrs["cors_mode"] != DicomWebServer.CorsMode.DIMSE_PROXY
            and "pacsbin_proxy" not in attrs
        ):
            attrs["pacsbin_proxy"] = None
        return super().validate(attrs)


class ApprovedUserSerializer(serializers.ModelSerializer):
    last_used_at = serializers.DateTimeField(
        read_only=True,
        allow_null=True,
        help_text="The last request the server's edge let through for this "
        "email (the gate; null: never, or not recorded yet).",
    )

    class Meta:
        model = ApprovedUser
        fields = ["id", "email", "created_at", "expires_at", "last_used_at"]
        read_only_fields = fields


@extend_schema_field(OpenApiTypes.STR)
class EmailItemField(serializers.JSONField):
    """Any JSON value: every bad item, of whatever type, is then reported by
    position and value in one list (see registry.normalise_all)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(allow_null=True, **kwargs)


@extend_schema_field(OpenApiTypes.DATETIME)
class EndField(serializers.JSONField):
    """Any JSON value, judged by ``expiry.expiry_from`` (whose messages name
    the value, as DRF's own date field's do not)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(required=False, allow_null=True, **kwargs)

    def to_internal_value(self, data: Any) -> Any:
        return data  # judged whole by expiry.expiry_from, naming the value


@extend_schema_field(OpenApiTypes.INT)
class DaysField(EndField):
    pass


class BulkEmailsSerializer(serializers.Serializer):
    emails = serializers.ListField(
        child=EmailItemField(),
        allow_empty=False,
        max_length=MAX_BULK_EMAILS,
        help_text="Emails to approve; any invalid one and nothing is written.",
    )
    expires_at = EndField(
        help_text="When every approval named ends (ISO 8601 date-time; a "
        "date alone: the end of that day, UTC), later than now and at most "
        f"{expiry.MAX_DAYS} days away; null: never. Applies to the emails "
        "already approved too (their end is replaced). Left out: new "
        "approvals never end and existing ones keep theirs.",
    )
    days = DaysField(
        help_text=f"Instead of expires_at: every approval named ends this many "
        f"days from now (1 to {expiry.MAX_DAYS}), the existing ones too.",
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        try:
            attrs["expiry"] = expiry.expiry_from(attrs, timezone.now())
        except DjangoValidationError as exc:
            raise serializers.ValidationError(exc.message_dict) from None
        return attrs


class BulkAddResultSerializer(serializers.Serializer):
    added = serializers.ListField(
        child=serializers.CharField(), help_text="Newly approved (normalised)."
    )
    existing = serializers.ListField(
        child=serializers.CharField(),
        help_text="Already approved (normalised); with expires_at or days, "
        "their end is now that one.",
    )


class AccessServerSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    institution = serializers.CharField(help_text="The institution's name.")
    qido_url = serializers.CharField()
    wado_url = serializers.CharField()
    access_token = serializers.CharField(
        required=False,
        help_text="Only for a server with edge_enforced: send it on every QIDO "
        "and WADO request as Authorization: Bearer <token>.",
    )
    access_token_expires_at = serializers.DateTimeField(
        required=False,
        help_text="When access_token expires (ISO 8601 UTC): ask again before.",
    )


class EdgeKeyConfigsSerializer(serializers.Serializer):
    nginx = serializers.CharField()
    caddy = serializers.CharField()


class EdgeKeySerializer(serializers.Serializer):
    edge_key = serializers.CharField(help_text="Shown once; stored hashed.")
    configs = EdgeKeyConfigsSerializer()


class AccessAnswerSerializer(serializers.Serializer):
    email = serializers.CharField(help_text="The normalised form of the email.")
    servers = AccessServerSerializer(many=True)


class HealthSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=["ok", "unavailable"])
    cache = serializers.ChoiceField(choices=["ok", "unavailable"])


class DetailSerializer(serializers.Serializer):
    detail = serializers.CharField()


class OhifConfigurationSerializer(serializers.Serializer):
    # camelCase: OHIF's own names.
    friendlyName = serializers.CharField()
    name = serializers.CharField()
    qidoRoot = serializers.CharField()
    wadoRoot = serializers.CharField()
    # Learnt from the archive (connectivity/capabilities.py), else conservative.
    qidoSupportsIncludeField = serializers.BooleanField()
    imageRendering = serializers.ChoiceField(choices=["wadors"])
    thumbnailRendering = serializers.ChoiceField(
        choices=["wadors", "thumbnail", "rendered"]
    )
    thumbnailRequestStrategy = serializers.ChoiceField(
        choices=["fetch"],
        required=False,
        help_text="Present with thumbnailRendering thumbnail or rendered: the "
        "archive answers a plain GET with Accept: image/jpeg.",
    )
    enableStudyLazyLoad = serializers.BooleanField()
    supportsFuzzyMatching = serializers.BooleanField()
    supportsWildcard = serializers.BooleanField()


class OhifDataSourceSerializer(serializers.Serializer):
    namespace = serializers.CharField()
    sourceName = serializers.CharField()
    configuration = OhifConfigurationSerializer()


class OhifAnswerSerializer(serializers.Serializer):
    email = serializers.CharField()
    defaultDataSourceName = serializers.CharField(allow_null=True)
    dataSources = OhifDataSourceSerializer(many=True)


class FindingSerializer(serializers.Serializer):
    code = serializers.CharField()
    message = serializers.CharField()


class ConnectivityCheckSerializer(serializers.Serializer):
    """Read-only: the contract shape, as ``ConnectivityCheck.to_dict()`` makes it."""

    id = serializers.IntegerField()
    created_at = serializers.DateTimeField()
    # The metaclass pops declared fields off the class, so this never shadows
    # Field.source; the stubs see a class attribute.
    source = serializers.ChoiceField(  # type: ignore[assignment]
        choices=ConnectivityCheck.Source.choices
    )
    origin = serializers.CharField()
    outcome = serializers.ChoiceField(choices=CheckOutcome.choices)
    findings = FindingSerializer(many=True)

    def to_representation(self, instance: ConnectivityCheck) -> dict[str, Any]:
        return instance.to_dict()


class RunCheckSerializer(serializers.Serializer):
    origin = serializers.CharField(
        required=False,
        max_length=200,
        help_text="The origin to test, e.g. https://pacsbin.com (default: the "
        "first uploader origin).",
    )


class ServerHealthSerializer(serializers.Serializer):
    """Read-only: what monitoring knows of a server (DESIGN.md "Monitoring"),
    as ``monitoring.health.answer`` makes it."""

    state = serializers.ChoiceField(choices=ServerHealth.State.choices)
    since = serializers.DateTimeField(
        allow_null=True, help_text="When the server entered its state."
    )
    last_checked_at = serializers.DateTimeField(allow_null=True)
    last_ok_at = serializers.DateTimeField(allow_null=True)
    outcome = serializers.ChoiceField(
        choices=CheckOutcome.choices,
        allow_null=True,
        help_text="The last scheduled check's outcome (null: never checked).",
    )
    tls_expires_at = serializers.DateTimeField(
        allow_null=True,
        help_text="When the archive's TLS certificate expires (https only).",
    )
    capabilities = serializers.DictField(
        help_text="What the archive does, learnt by a successful check "
        "({} when unknown)."
    )

    def to_representation(self, instance: DicomWebServer) -> dict[str, Any]:
        return health.answer(instance)


class AccessReviewSerializer(serializers.ModelSerializer):
    class Meta:
        model = AccessReview
        fields = [
            "id",
            "server",
            "state",
            "sent_to",
            "started_by",
            "created_at",
            "due_at",
            "answered_at",
            "note",
            "kept_count",
            "removed",
        ]
        read_only_fields = fields
