"""`python manage.py reprice`: compute every stored cost again at the prices in force now."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from tracing import repricing, selectors


class Command(BaseCommand):
    help = (
        "Price every stored model call again with the current table (the shipped prices and "
        "STUDIO_PRICES) and update the traces' costs, a few hundred traces per transaction. "
        "Run it after changing STUDIO_PRICES (and restarting Studio): costs are computed when "
        "spans arrive."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        table = selectors.price_table()
        self.stdout.write(f"Repricing with {len(table.rows)} model prices…")
        done = repricing.reprice(table)
        self.stdout.write(
            f"Repriced {done.traces} trace{'s' if done.traces != 1 else ''}: "
            f"{done.spans} model call{'s' if done.spans != 1 else ''} changed cost."
        )
