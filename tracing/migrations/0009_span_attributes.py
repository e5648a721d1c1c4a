from django.db import migrations

from tracing import search

# The attribute table (see tracing.search): the attribute clauses' index, filled here for the
# spans already indexed (SQLite; the indexer does the rest) or stored (PostgreSQL), and kept by
# the indexer or a trigger afterwards, and by the delete trigger.


class Migration(migrations.Migration):
    dependencies = [
        ("tracing", "0008_project"),
    ]

    operations = [
        migrations.RunPython(search.create_attrs, search.drop_attrs, elidable=False),
    ]
