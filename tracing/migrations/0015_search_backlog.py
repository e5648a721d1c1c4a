from django.db import migrations

from tracing import search

# PostgreSQL indexes spans for search after the commit, as SQLite does (see tracing.search): the
# writer's transaction notes each new span in a backlog instead of building its search text and
# attribute rows, and the indexers take the backlog. The spans stored so far are indexed already;
# going back indexes the backlog, then restores the triggers of the writer's transaction. SQLite:
# nothing to do.


class Migration(migrations.Migration):
    dependencies = [
        ("tracing", "0014_overview_indexes"),
    ]

    operations = [
        migrations.RunPython(search.create_backlog, search.drop_backlog, elidable=False),
    ]
