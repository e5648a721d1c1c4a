from django.apps import AppConfig
from django.db.backends.signals import connection_created
from django.db.models.signals import post_migrate


class TracingConfig(AppConfig):
    name = "tracing"
    verbose_name = "Tracing"

    def ready(self) -> None:
        from tracing import retention, totals

        connection_created.connect(
            retention.prepare_sqlite_connection, dispatch_uid="tracing.sqlite_connection"
        )
        post_migrate.connect(totals.keep, sender=self, dispatch_uid="tracing.totals")
