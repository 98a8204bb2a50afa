from django.db import migrations, models


def marker_record(apps, schema_editor):
    """The first marker row, holding this table's OID (PostgreSQL only; see RestoreMarker)."""
    if schema_editor.connection.vendor != "postgresql":
        return
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO tokens_restoremarker (table_oid, recorded_at) "
            "SELECT 'tokens_restoremarker'::regclass::oid, now()"
        )


class Migration(migrations.Migration):

    dependencies = [
        ("tokens", "0005_revoked_access_tokens"),
    ]

    operations = [
        migrations.CreateModel(
            name="RestoreMarker",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("table_oid", models.BigIntegerField(null=True, verbose_name="OID of this table when the row was written")),
                ("recorded_at", models.DateTimeField()),
                ("after_restore_at", models.DateTimeField(blank=True, null=True, verbose_name="last after_restore")),
            ],
            options={
                "verbose_name": "restore marker",
                "verbose_name_plural": "restore markers",
            },
        ),
        migrations.RunPython(marker_record, migrations.RunPython.noop),
    ]
