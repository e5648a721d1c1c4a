from django.db import migrations, models


def fill_costs(apps, schema_editor):  # noqa: ANN001, ANN201
    # Spans stored before costs were: priced now, at the table in use, like `manage.py reprice`.
    from tracing import repricing

    repricing.reprice()


class Migration(migrations.Migration):
    dependencies = [
        ("tracing", "0009_span_attributes"),
    ]

    operations = [
        # Nullable, so that SQLite adds them in place (a rebuilt span table would lose the
        # search index's triggers).
        migrations.AddField(
            model_name="span",
            name="cost_usd",
            field=models.FloatField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="trace",
            name="cost_usd",
            field=models.FloatField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="trace",
            name="unpriced_spans",
            field=models.IntegerField(blank=True, null=True),
        ),
        migrations.AddIndex(
            model_name="trace",
            index=models.Index(fields=["-cost_usd", "-trace_id"], name="trace_cost_idx"),
        ),
        migrations.RunPython(fill_costs, migrations.RunPython.noop, elidable=False),
    ]
