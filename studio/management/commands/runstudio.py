"""`python manage.py runstudio`: migrate, then serve pages, API and OTLP/HTTP with uvicorn on one
port, and OTLP/gRPC on another, in one process that shares one writer."""

from __future__ import annotations

import errno
import logging
import signal
import socket
import sys
from typing import Any

import uvicorn
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser

from studio import extensions
from studio.runtime import runtime
from studio.security import allowed_hosts

logger = logging.getLogger("studio")

SHUTDOWN_GRACE_SECONDS = 10


def bind_http(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    # Lets a restarted Studio take its port back from TIME_WAIT; on Linux it still refuses a
    # port another process listens on.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise CommandError(
                f"Port {port} on {host} is already in use (HTTP). Stop the other program, "
                f"or start Studio with --port <another port> (env PORT)."
            ) from None
        raise CommandError(f"Cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


class Stop(Exception):
    """Raised by our signal handler once uvicorn has shut down, so that the drain runs."""


def _stop(signum: int, frame: Any) -> None:
    raise Stop(signal.Signals(signum).name)


class StudioServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, grpc_server: Any) -> None:
        super().__init__(config)
        self.grpc_server = grpc_server

    def handle_exit(self, sig: int, frame: Any) -> None:
        # Stop accepting on both receivers at once; in-flight RPCs get the grace period.
        if self.grpc_server is not None:
            self.grpc_server.stop(SHUTDOWN_GRACE_SECONDS)
        super().handle_exit(sig, frame)


class Command(BaseCommand):
    help = "Start Studio: pages, API and OTLP/HTTP on --port, OTLP/gRPC on --grpc-port."
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default=settings.HOST, help="bind address (STUDIO_HOST)")
        parser.add_argument("--port", type=int, default=settings.PORT, help="HTTP port (PORT)")
        parser.add_argument(
            "--grpc-port",
            type=int,
            default=settings.OTEL_GRPC_PORT,
            help="OTLP/gRPC port (OTEL_GRPC_PORT)",
        )
        parser.add_argument(
            "--insecure",
            action="store_true",
            help="allow STUDIO_AUTH=none on an address other machines can reach",
        )

    def handle(self, *args: Any, **options: Any) -> None:

        from ingest.grpc import PortInUse, make_server
        from ingest.writer import get_writer
        from tracing import retention

        host: str = options["host"]
        # The Host check follows the address actually bound, not STUDIO_HOST's.
        settings.HOST = host
        settings.ALLOWED_HOSTS = allowed_hosts(host, settings.STUDIO_ALLOWED_HOSTS)
        self.check_auth(host, insecure=options["insecure"])
        call_command("migrate", interactive=False, verbosity=0)
        # Before anything is served: converting an old SQLite database rewrites the file.
        retention.ensure_incremental_vacuum()
        runtime.migrated = True
        extensions.serving.send(sender=self.__class__)

        http_socket = bind_http(host, options["port"])
        http_port = http_socket.getsockname()[1]
        try:
            grpc_server, grpc_port = make_server(host, options["grpc_port"])
        except PortInUse as exc:
            http_socket.close()
            raise CommandError(
                f"Port {options['grpc_port']} on {host} is already in use (OTLP/gRPC). Stop the "
                f"other program, or start Studio with --grpc-port <another port> "
                f"(env OTEL_GRPC_PORT)."
            ) from exc
        runtime.grpc_listening = True

        shown_host = "localhost" if host in ("127.0.0.1", "0.0.0.0", "::", "::1") else host
        runtime.http_url = f"http://{shown_host}:{http_port}"
        runtime.grpc_address = f"http://{shown_host}:{grpc_port}"
        self.stdout.write(self.banner(http_port, grpc_port, host))
        self.stdout.flush()

        config = uvicorn.Config(
            "studio.asgi:application",
            lifespan="off",
            access_log=False,
            log_level="warning",
            timeout_graceful_shutdown=SHUTDOWN_GRACE_SECONDS,
            ws_max_size=1024 * 1024,
        )
        server = StudioServer(config, grpc_server)
        # uvicorn re-raises the signal that stopped it once it has shut down; with the default
        # handlers that would kill the process before the writer drains.
        signal.signal(signal.SIGTERM, _stop)
        signal.signal(signal.SIGINT, _stop)
        purging = None
        if settings.STUDIO_RETENTION_INTERVAL:
            purging = retention.start_background_purge(settings.STUDIO_RETENTION_INTERVAL)
        try:
            server.run(sockets=[http_socket])
        except Stop:
            pass
        finally:
            if purging is not None:
                # A purge stops between two transactions: nothing is left half deleted.
                thread, stop = purging
                stop.set()
                thread.join(SHUTDOWN_GRACE_SECONDS)
            grpc_server.stop(SHUTDOWN_GRACE_SECONDS).wait(SHUTDOWN_GRACE_SECONDS + 1)
            drained = get_writer().close(timeout=60)
            self.stdout.write("Studio stopped." if drained else "Studio stopped (writer busy).")
            sys.stdout.flush()

    def check_auth(self, host: str, *, insecure: bool) -> None:
        from studio.settings import is_loopback

        if not settings.STUDIO_AUTH_SET:
            # The default follows the address actually bound, --host included.
            settings.STUDIO_AUTH = "none" if is_loopback(host) else "login"
        if settings.STUDIO_AUTH == "none" and not is_loopback(host):
            if not insecure:
                raise CommandError(
                    f"Refusing to serve {host} without sign-in: unset STUDIO_AUTH (sign-in is "
                    "then on), or pass --insecure to let anyone who reaches it read every trace.",
                    returncode=2,
                )
            self.stderr.write(
                f"WARNING: sign-in is off (STUDIO_AUTH=none) on {host}: anyone who reaches this "
                "address reads and deletes every trace."
            )

    def no_users_hint(self) -> str:
        from django.contrib.auth import get_user_model

        if settings.STUDIO_AUTH != "login" or get_user_model().objects.exists():
            return ""
        return "; no users yet: python manage.py createsuperuser"

    def banner(self, http_port: int, grpc_port: int, host: str) -> str:
        url = runtime.http_url
        return "\n".join(
            [
                f"Studio is listening on {host}",
                f"  pages and API   {url}/",
                f"  OTLP/HTTP       {url}/v1/traces",
                f"  OTLP/gRPC       {runtime.grpc_address}",
                f"  data            {settings.DATABASES['default']['NAME']}",
                f"  host names      {', '.join(settings.ALLOWED_HOSTS)} (STUDIO_ALLOWED_HOSTS)",
                f"  sign-in         {settings.STUDIO_AUTH} (STUDIO_AUTH){self.no_users_hint()}",
                "",
                "Point your app at it:",
                f'  agentscope.init(studio_url="{url}")',
                f"  OTEL_EXPORTER_OTLP_ENDPOINT={url}  OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf",
                f"  OTEL_EXPORTER_OTLP_ENDPOINT={runtime.grpc_address}  "
                "OTEL_EXPORTER_OTLP_PROTOCOL=grpc",
                "",
            ]
        )
