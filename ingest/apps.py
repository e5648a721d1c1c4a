from django.apps import AppConfig


class IngestConfig(AppConfig):
    name = "ingest"
    verbose_name = "Ingest"

    def ready(self) -> None:
        from ingest import otlp
        from tracing import selectors

        # Spans are priced as they are decoded, at the table in use (STUDIO_PRICES included).
        otlp.default_prices = selectors.price_table
