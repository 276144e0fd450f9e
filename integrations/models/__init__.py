"""The app's models, one module per feature: the registry (institutions,
servers, approved users), API keys, connectivity checks, monitoring and
onboarding requests. Everything other modules import is named here."""

from __future__ import annotations

from integrations.models.connectivity import (
    MAX_STORED_CODE_LENGTH,
    MAX_STORED_FINDINGS,
    MAX_STORED_MESSAGE_LENGTH,
    CheckOutcome,
    ConnectivityCheck,
    ConnectivityCheckManager,
    storable_findings,
)
from integrations.models.edge import EdgeSigningKey, EdgeUsage
from integrations.models.keys import ApiKey, ApiKeyManager
from integrations.models.monitoring import MonitoringAlert, ServerHealth
from integrations.models.onboarding import OnboardingRequest, OnboardingRequestQuerySet
from integrations.models.registry import (
    EMAIL_ONCE_PER_SERVER,
    INSTITUTION_NAME_UNIQUE,
    SERVER_NAME_UNIQUE,
    ApprovedUser,
    ApprovedUserQuerySet,
    DicomWebServer,
    DicomWebServerQuerySet,
    Institution,
    check_pacsbin_proxy,
    duplicate_error,
    integrity_error_as_validation,
)
from integrations.models.reviews import AccessReview

__all__ = [
    "AccessReview",
    "EMAIL_ONCE_PER_SERVER",
    "INSTITUTION_NAME_UNIQUE",
    "MAX_STORED_CODE_LENGTH",
    "MAX_STORED_FINDINGS",
    "MAX_STORED_MESSAGE_LENGTH",
    "SERVER_NAME_UNIQUE",
    "MonitoringAlert",
    "ServerHealth",
    "ApiKey",
    "ApiKeyManager",
    "ApprovedUser",
    "ApprovedUserQuerySet",
    "CheckOutcome",
    "ConnectivityCheck",
    "ConnectivityCheckManager",
    "DicomWebServer",
    "DicomWebServerQuerySet",
    "EdgeSigningKey",
    "EdgeUsage",
    "Institution",
    "OnboardingRequest",
    "OnboardingRequestQuerySet",
    "check_pacsbin_proxy",
    "duplicate_error",
    "integrity_error_as_validation",
    "storable_findings",
]
