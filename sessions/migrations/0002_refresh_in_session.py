"""Refresh tokens move into the session row (issue 15.1).

Additive and online: three nullable columns (no rewrite), the purge's index built concurrently
on PostgreSQL, the old idle_expires_at index dropped (only the purge used it; the previous
release's purge still works without it, only slower), and fillfactor 90 so a refresh's update
finds room on its own page (a HOT update) — it applies to pages written from now on.
"""

from django.db import migrations, models

from authserver.migration_ops import AddIndexOnline, TableStorageParameters


class Migration(migrations.Migration):
    atomic = False  # CREATE INDEX CONCURRENTLY cannot run in a transaction

    dependencies = [
        ("authsessions", "0001_moved_from_tokens"),
    ]

    operations = [
        migrations.AddField(
            model_name="session",
            name="refresh_digest",
            field=models.BinaryField(blank=True, editable=False, max_length=32, null=True),
        ),
        migrations.AddField(
            model_name="session",
            name="refresh_spent_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="session",
            name="ends_not_before",
            field=models.DateTimeField(blank=True, null=True),
        ),
        AddIndexOnline(
            model_name="session",
            index=models.Index(fields=["ends_not_before"], name="tokens_session_ends_nb"),
        ),
        migrations.RemoveIndex(model_name="session", name="tokens_session_idle_expires"),
        TableStorageParameters("session", {"fillfactor": 90}),
    ]
