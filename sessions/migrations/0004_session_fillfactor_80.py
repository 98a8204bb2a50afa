"""fillfactor 80 on the session table (issue 15: growth per million refreshes).

At 90 a page of sessions keeps room for about three more row versions (a row is about 250
bytes); a refresh's HOT update needs room on its own page until pruning reclaims the older
versions, which it can only do once no open snapshot still sees them. With eight refreshers at
once the room ran out now and then, the update went to another page with new index entries, and
the database grew 5.19 MB per million refreshes (bench/results/scale.json of 2026-12-04). At 80
there is room for about six. Additive and online: it only changes how full new pages are written
(existing pages stay as they are), and costs about 30 bytes per session.
"""

from django.db import migrations

from authserver.migration_ops import TableStorageParameters


class Migration(migrations.Migration):
    dependencies = [
        ("authsessions", "0003_references_without_constraints"),
    ]

    operations = [
        TableStorageParameters("session", {"fillfactor": 80}),
    ]
