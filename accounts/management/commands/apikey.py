"""`python manage.py apikey create|list|revoke`: ingest keys (per project), read keys (per user)."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from accounts import keys
from accounts.models import ApiKey


class Command(BaseCommand):
    help = "Create, list and revoke API keys."

    def add_arguments(self, parser: CommandParser) -> None:
        commands = parser.add_subparsers(dest="action", required=True)
        create = commands.add_parser("create", help="print a new key (shown only this once)")
        target = create.add_mutually_exclusive_group(required=True)
        target.add_argument("--project", help="an ingest key that sends traces to this project")
        target.add_argument("--user", help="a read key that acts as this user on the API")
        create.add_argument("--name", default="", help="a label to tell keys apart")
        commands.add_parser("list", help="list keys (never their text)")
        revoke = commands.add_parser("revoke", help="revoke a key by id or by its prefix")
        revoke.add_argument("key", help="the id or the prefix `apikey list` shows")

    def handle(self, *args: Any, **options: Any) -> None:
        getattr(self, f"_{options['action']}")(options)

    def _create(self, options: dict[str, Any]) -> None:
        if options["project"] is not None:
            if not options["project"].strip():
                raise CommandError("--project needs a name")
            key, raw = keys.create_key(
                ApiKey.Kind.INGEST, project=options["project"].strip(), name=options["name"]
            )
        else:
            try:
                user = get_user_model().objects.get(username=options["user"])
            except get_user_model().DoesNotExist:
                raise CommandError(f"no user {options['user']!r}") from None
            key, raw = keys.create_key(ApiKey.Kind.READ, user=user, name=options["name"])
        self.stderr.write(
            f"Created {key.kind} key {key.id} for {key.scope}; it is not shown again."
        )
        # The key is the last line of stdout, so scripts can take it with `tail -1`.
        self.stdout.write(raw)

    def _list(self, options: dict[str, Any]) -> None:
        rows = ApiKey.objects.select_related("user")
        if not rows:
            self.stdout.write("No keys.")
        for key in rows:
            state = f"revoked {key.revoked_at:%Y-%m-%d %H:%M}" if key.revoked_at else "active"
            self.stdout.write(
                f"{key.id}\t{key.prefix}…\t{key.kind}\t{key.scope}\t{key.name}\t"
                f"{key.created_at:%Y-%m-%d %H:%M}\t{state}"
            )

    def _revoke(self, options: dict[str, Any]) -> None:
        ref: str = options["key"].rstrip("…")
        matches = list(
            ApiKey.objects.filter(pk=int(ref))
            if ref.isdigit()
            else ApiKey.objects.filter(prefix=ref)
        )
        if len(matches) != 1:
            raise CommandError(f"no single key matches {ref!r}: see `apikey list`")
        keys.revoke(matches[0])
        self.stdout.write(f"Revoked key {matches[0].id} ({matches[0].scope}).")
