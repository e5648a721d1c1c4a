from django.apps import AppConfig
from django.db.backends.signals import connection_created


class TracingConfig(AppConfig):
    name = "tracing"
    verbose_name = "Tracing"

    def ready(self) -> None:
        from tracing import retention

        connection_created.connect(
            retention.prepare_sqlite_connection, dispatch_uid="tracing.sqlite_connection"
        )
