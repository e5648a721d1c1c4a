from django.db import migrations, models

from tracing import totals

# The overview's cards over all time come from totals kept by triggers on tracing_trace (see
# tracing.totals), filled here from the traces stored so far in the same transaction.


class Migration(migrations.Migration):
    dependencies = [
        ("tracing", "0015_search_backlog"),
    ]

    operations = [
        migrations.CreateModel(
            name="TraceTotal",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("project", models.TextField()),
                ("bucket", models.IntegerField()),
                ("traces", models.BigIntegerField(default=0)),
                ("spans", models.BigIntegerField(default=0)),
                ("error_traces", models.BigIntegerField(default=0)),
                ("error_spans", models.BigIntegerField(default=0)),
                ("input_tokens", models.BigIntegerField(default=0)),
                ("output_tokens", models.BigIntegerField(default=0)),
                ("cost_usd", models.FloatField(default=0.0)),
                ("unpriced_spans", models.BigIntegerField(default=0)),
            ],
            options={
                "indexes": [models.Index(fields=["project", "bucket"], name="trace_total_bucket_idx")],
            },
        ),
        migrations.RunPython(totals.create, totals.drop, elidable=False),
    ]
