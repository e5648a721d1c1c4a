# Run, Message and UserInputRequest moved to the `runs` app. Their tables stay as they are
# (runs keeps their names): this only tells Django's model state, so no row is touched.

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("tracing", "0003_trace_cards_index"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.DeleteModel(name="UserInputRequest"),
                migrations.DeleteModel(name="Message"),
                migrations.DeleteModel(name="Run"),
            ],
            database_operations=[],
        ),
    ]
