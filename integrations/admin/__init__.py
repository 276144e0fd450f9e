"""The admin, one module per part of the app. Django's admin autodiscovery
imports this package; each module registers the ModelAdmins it defines.

- ``registry``: institutions, DICOMweb servers, approved users, API keys;
- ``onboarding``: staff review of self-service submissions;
- ``connectivity``: the server admin's checks and fix-it configurations;
- ``monitoring``: servers by monitoring state, and the server page's health;
- ``gate``: the server page's edge key and edge use (the gate);
- ``reviews``: access reviews, and the server list's action to start one.
"""

from __future__ import annotations

from integrations.admin import (
    connectivity,
    gate,
    monitoring,
    onboarding,
    registry,
    reviews,
)

__all__ = [
    "connectivity",
    "gate",
    "monitoring",
    "onboarding",
    "registry",
    "reviews",
]
