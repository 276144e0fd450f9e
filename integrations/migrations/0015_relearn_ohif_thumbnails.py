"""Forget /rendered and /thumbnail as learnt before issue 17.

They were asked with ``viewport=256,256``; OHIF 3.13 sends
``viewport=256%2C256``, which an archive may refuse (Orthanc 1.10: 400), so a
stored yes may break OHIF's thumbnails. Dropping them gives OHIF the
conservative ``wadors`` until the next check relearns (at once: the learnt
time is cleared). Other capabilities were learnt with OHIF's own forms and
stay.
"""

from __future__ import annotations

from typing import Any

from django.db import migrations

LEARNT_WITH_ANOTHER_FORM = ("rendered", "thumbnail")
BATCH = 500


def forget(apps: Any, schema_editor: Any) -> None:
    ServerHealth = apps.get_model("integrations", "ServerHealth")
    changed = []
    for health in ServerHealth.objects.iterator(BATCH):
        capabilities = health.capabilities
        if not isinstance(capabilities, dict) or not any(
            key in capabilities for key in LEARNT_WITH_ANOTHER_FORM
        ):
            continue
        health.capabilities = {
            key: value
            for key, value in capabilities.items()
            if key not in LEARNT_WITH_ANOTHER_FORM
        }
        health.capabilities_learnt_at = None
        changed.append(health)
    ServerHealth.objects.bulk_update(
        changed, ["capabilities", "capabilities_learnt_at"], batch_size=BATCH
    )


class Migration(migrations.Migration):
    dependencies = [
        ("integrations", "0014_api_key_created_by"),
    ]

    operations = [
        migrations.RunPython(forget, migrations.RunPython.noop, elidable=True),
    ]
