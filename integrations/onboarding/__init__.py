"""Self-service onboarding: the public form, the private status page, staff
review. ``approve_request`` is the one way a submission reaches the registry."""

from __future__ import annotations

from integrations.onboarding.flows import (
    ApprovalResult,
    ReviewError,
    approve_request,
    differences,
    reject_request,
    submit_request,
)

__all__ = [
    "ApprovalResult",
    "ReviewError",
    "approve_request",
    "differences",
    "reject_request",
    "submit_request",
]
