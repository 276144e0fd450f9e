from __future__ import annotations

from django.apps import AppConfig
from django.contrib.admin import apps as admin_apps


class IntegrationsConfig(AppConfig):
    name = "integrations"
    verbose_name = "DICOMweb integrations"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from simple_history.signals import pre_create_historical_record

        from integrations import audit, checks  # noqa: F401  (registers checks)

        pre_create_historical_record.connect(
            audit.stamp_history, dispatch_uid="integrations.audit.stamp_history"
        )
        self._invalidate_edge_decisions()

    def _invalidate_edge_decisions(self) -> None:
        """The gate's cached decisions must follow every write to a server or
        an approval, whichever path made it (admin, API, onboarding, imports):
        a signal is the one place all single-row writes pass. The bulk flows
        (registry.py, transfer.py) send none and invalidate themselves."""
        from django.db.models.signals import post_delete, post_save

        from integrations.edge import decisions
        from integrations.models import ApprovedUser, DicomWebServer

        for model in (DicomWebServer, ApprovedUser):
            for signal in (post_save, post_delete):
                signal.connect(
                    decisions.on_change,
                    sender=model,
                    dispatch_uid=f"edge-{signal is post_save}-{model.__name__}",
                )


class RegistryAdminConfig(admin_apps.AdminConfig):
    """django.contrib.admin with a site whose every list checks its
    whole-number filters (third-party admins included)."""

    default = False  # IntegrationsConfig stays this module's app config

    default_site = "integrations.adminlookups.RegistryAdminSite"
