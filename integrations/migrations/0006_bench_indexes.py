"""PostgreSQL only: an index that serves the admin's "email starts with" search.

A plain btree serves LIKE 'x%' only under the C collation; varchar_pattern_ops
serves it under any collation. SQLite compares by code point, so the admin uses
a range on the existing index there and needs nothing more.
"""

from django.db import migrations

INDEX = "approved_user_email_like_idx"


def create(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(
            f"CREATE INDEX IF NOT EXISTS {INDEX} ON integrations_approveduser "
            "(email_key varchar_pattern_ops)"
        )


def drop(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(f"DROP INDEX IF EXISTS {INDEX}")


class Migration(migrations.Migration):
    dependencies = [("integrations", "0005_browser_checks_for_requests")]

    operations = [migrations.RunPython(create, drop, elidable=False)]
