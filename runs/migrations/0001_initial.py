# The models moved here from `tracing` with their tables (tracing 0004 drops them from its state):
# created in Django's state only, so a database made before the move keeps every row.

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    initial = True

    dependencies = [
        ("tracing", "0004_runs_move_to_runs_app"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name='Run',
                    fields=[
                        ('id', models.CharField(max_length=64, primary_key=True, serialize=False)),
                        ('project', models.TextField(default='')),
                        ('name', models.TextField(default='')),
                        ('pid', models.IntegerField(blank=True, null=True)),
                        ('client_timestamp', models.CharField(blank=True, default='', max_length=64)),
                        ('run_dir', models.TextField(blank=True, default='')),
                        ('started_at', models.DateTimeField()),
                        ('finished_at', models.DateTimeField(blank=True, null=True)),
                    ],
                    options={
                        'db_table': 'tracing_run',
                        'indexes': [models.Index(fields=['-started_at'], name='run_started_idx'), models.Index(fields=['project', '-started_at'], name='run_project_idx')],
                    },
                ),
                migrations.CreateModel(
                    name='Message',
                    fields=[
                        ('id', models.BigAutoField(primary_key=True, serialize=False)),
                        ('msg_id', models.CharField(max_length=64)),
                        ('reply_id', models.CharField(blank=True, default='', max_length=64)),
                        ('reply_name', models.TextField(blank=True, default='')),
                        ('reply_role', models.CharField(blank=True, default='', max_length=32)),
                        ('name', models.TextField(blank=True, default='')),
                        ('role', models.CharField(blank=True, default='', max_length=32)),
                        ('client_timestamp', models.CharField(blank=True, default='', max_length=64)),
                        ('created_at', models.DateTimeField()),
                        ('updated_at', models.DateTimeField()),
                        ('content_json', models.TextField(default='""')),
                        ('metadata_json', models.TextField(default='{}')),
                        ('run', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='messages', to='runs.run')),
                    ],
                    options={
                        'db_table': 'tracing_message',
                        'constraints': [models.UniqueConstraint(fields=('run', 'msg_id'), name='message_run_msg_uniq')],
                    },
                ),
                migrations.CreateModel(
                    name='UserInputRequest',
                    fields=[
                        ('request_id', models.CharField(max_length=64, primary_key=True, serialize=False)),
                        ('agent_id', models.CharField(blank=True, default='', max_length=64)),
                        ('agent_name', models.TextField(blank=True, default='')),
                        ('structured_schema_json', models.TextField(blank=True, default='')),
                        ('created_at', models.DateTimeField()),
                        ('answered_at', models.DateTimeField(blank=True, null=True)),
                        ('answer_text', models.TextField(blank=True, default='')),
                        ('answer_structured_json', models.TextField(blank=True, default='')),
                        ('run', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='input_requests', to='runs.run')),
                    ],
                    options={
                        'db_table': 'tracing_userinputrequest',
                        'indexes': [models.Index(fields=['run', 'created_at'], name='input_request_run_idx')],
                    },
                ),
            ],
            database_operations=[],
        ),
    ]
