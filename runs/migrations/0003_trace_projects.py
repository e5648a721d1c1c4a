# Traces stored before projects existed: an AgentScope run's take the run's project, as new
# ones do (runs.writes.trace_projects_from_runs).

from django.db import migrations

SQL = """
UPDATE tracing_trace SET project = (
    SELECT r.project FROM tracing_run r WHERE r.id = tracing_trace.conversation_id
)
WHERE project = 'default' AND conversation_id IN (
    SELECT id FROM tracing_run WHERE project <> '' AND project <> 'default'
)
"""


class Migration(migrations.Migration):

    dependencies = [
        ('runs', '0002_run_app_project'),
        ('tracing', '0008_project'),
    ]

    operations = [
        migrations.RunSQL(SQL, reverse_sql=migrations.RunSQL.noop),
    ]
