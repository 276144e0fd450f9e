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


class RegistryAdminConfig(admin_apps.AdminConfig):
    """django.contrib.admin with a site whose every list checks its
    whole-number filters (third-party admins included)."""

    default = False  # IntegrationsConfig stays this module's app config

    default_site = "integrations.adminlookups.RegistryAdminSite"
