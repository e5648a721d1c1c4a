from django.db import migrations

from tracing import search

# A failed span's search text names its status (tracing.search.STATUS_WORD): the spans stored
# failed before are indexed again. Going back leaves the word in their text, which is harmless.


class Migration(migrations.Migration):
    dependencies = [
        ("tracing", "0009_span_attributes"),
    ]

    operations = [
        migrations.RunPython(search.reindex_failed, migrations.RunPython.noop, elidable=False),
    ]
