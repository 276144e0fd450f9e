"""Self-service onboarding: the public form, the emailed confirmation, the
private status page, staff review. ``approve_request`` is the one way a
submission reaches the registry."""

from __future__ import annotations

from integrations.onboarding.lifecycle import (
    ApprovalResult,
    ConfirmationError,
    ReviewError,
    approve_request,
    confirm_request,
    differences,
    reject_request,
    resend_confirmation,
    submit_request,
)

__all__ = [
    "ApprovalResult",
    "ConfirmationError",
    "ReviewError",
    "approve_request",
    "confirm_request",
    "differences",
    "reject_request",
    "resend_confirmation",
    "submit_request",
]
