"""`python manage.py demo`: send a realistic multi-agent session to a running Studio, made with
the tracing SDK, so a newcomer sees a full trace within a minute."""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser


class Command(BaseCommand):
    help = "Send a demo agent session (planner, researcher, tools, a failing tool) to Studio."
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--studio-url",
            default=f"http://localhost:{settings.PORT}",
            help="Studio's HTTP URL (default: http://localhost:$PORT)",
        )
        parser.add_argument(
            "--grpc",
            metavar="ADDRESS",
            help="send over OTLP/gRPC to this address instead, e.g. http://localhost:4317",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        # The demo runs the SDK in this process; it talks to Studio only through OTLP.
        from studio_sdk.demo import run_demo

        studio_url: str = options["studio_url"].rstrip("/")
        target, protocol = (options["grpc"], "grpc") if options["grpc"] else (studio_url, "http")
        # Exporters only log failures, so check for Studio first and for the trace afterwards.
        if _get(f"{studio_url}/healthz") != 200:
            raise CommandError(
                f"No Studio answers at {studio_url}. Is Studio running "
                f"(python manage.py runstudio)? Pass --studio-url otherwise."
            )
        try:
            trace_id = run_demo(target, protocol=protocol)
        except Exception as exc:
            raise CommandError(f"Could not send the demo to {target}: {exc}") from exc
        deadline = time.monotonic() + 15
        while _get(f"{studio_url}/api/traces/{trace_id}/") != 200:
            if time.monotonic() > deadline:
                raise CommandError(f"The demo was sent to {target} but did not arrive.")
            time.sleep(0.2)
        self.stdout.write(f"Sent a demo session. Open {studio_url}/traces/{trace_id}/")


def _get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except (OSError, ValueError):
        return 0
