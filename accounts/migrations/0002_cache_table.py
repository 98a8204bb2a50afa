"""Create the database cache table, so `migrate` alone prepares a working shared cache.

Without REDIS_URL the default cache is django.core.cache.backends.db.DatabaseCache (rate limits
and lockouts must be shared by every gunicorn worker). `createcachetable` is idempotent and does
nothing for non-database caches.
"""

from django.core.management import call_command
from django.db import migrations


def create_cache_tables(apps, schema_editor):
    call_command("createcachetable", database=schema_editor.connection.alias, verbosity=0)


class Migration(migrations.Migration):
    dependencies = [("accounts", "0001_initial")]

    operations = [migrations.RunPython(create_cache_tables, migrations.RunPython.noop)]
