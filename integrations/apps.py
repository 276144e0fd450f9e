from __future__ import annotations

from django.apps import AppConfig


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
