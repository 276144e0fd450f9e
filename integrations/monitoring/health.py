"""The health of one server as the API answers it (DESIGN.md "Monitoring")."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from integrations.connectivity import capabilities
from integrations.models import DicomWebServer, ServerHealth


def _iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


def of(server: DicomWebServer) -> ServerHealth:
    """The server's health row, or an unsaved one (never checked)."""
    try:
        return server.health
    except ServerHealth.DoesNotExist:
        return ServerHealth(server=server)


def answer(server: DicomWebServer) -> dict[str, Any]:
    health = of(server)
    return {
        "state": health.state,
        "since": _iso(health.since),
        "last_checked_at": _iso(health.last_checked_at),
        "last_ok_at": _iso(health.last_ok_at),
        "outcome": health.outcome or None,
        "tls_expires_at": _iso(health.tls_expires_at),
        # Read back defensively: only known keys with the values they may hold.
        "capabilities": capabilities.clean(health.capabilities),
    }
