"""`python manage.py purge [--dry-run]`: apply the retention policy once, now."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from tracing import retention


class Command(BaseCommand):
    help = (
        "Delete the traces the retention policy no longer keeps (STUDIO_RETENTION_DAYS, "
        "STUDIO_RETENTION_MAX_SPANS, or a project's own), oldest first, and give the space back."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--dry-run", action="store_true", help="say what would be deleted; delete nothing"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        # A runstudio on the same database shares the lock: paced the same way, it keeps ingesting.
        results = retention.purge_all(dry_run=options["dry_run"])
        for result in results:
            if result.project is None:
                scope = " (projects without their own policy)" if len(results) > 1 else ""
                self.stdout.write(f"{result.policy.describe()}{scope}.")
            else:
                self.stdout.write(f"Project {result.project}: {result.policy.describe()}.")
            for line in result.lines():
                self.stdout.write(line)
        if options["dry_run"]:
            self.stdout.write("Nothing was deleted (--dry-run).")
