"""`python manage.py runstudio`: migrate, then serve pages, API and OTLP/HTTP with uvicorn on one
port, and OTLP/gRPC on another, in one process that shares one writer.

With `--workers N` (N > 1), this process binds the HTTP port and hands the listening socket to N
worker processes (spawned, so none inherits a thread or a database connection), which also listen
on the gRPC port together (SO_REUSEPORT); each has its own writer. The parent only supervises: a
signal stops every worker once, and each drains its writer before it exits."""

from __future__ import annotations

import errno
import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import socket
import sys
import threading
import time
from typing import Any

import uvicorn
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser

from ingest.memory import limit_heap_growth
from studio import extensions
from studio.runtime import runtime
from studio.security import allowed_hosts

logger = logging.getLogger("studio")

SHUTDOWN_GRACE_SECONDS = 10
# A worker's exit status when its writer did not drain in time.
WRITER_BUSY_STATUS = 3
# After SIGTERM a worker has its grace, its writer's drain (60 s) and a margin; then it is killed.
STOP_DEADLINE_SECONDS = SHUTDOWN_GRACE_SECONDS + 60 + 20


def _bind(host: str, port: int, *, option: int, what: str, hint: str) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, option, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise CommandError(
                f"Port {port} on {host} is already in use ({what}). Stop the other program, "
                f"or start Studio with {hint}."
            ) from None
        raise CommandError(f"Cannot listen on {host}:{port}: {exc.strerror}") from None
    return sock


def bind_http(host: str, port: int) -> socket.socket:
    # SO_REUSEADDR lets a restarted Studio take its port back from TIME_WAIT; on Linux it still
    # refuses a port another process listens on.
    sock = _bind(
        host,
        port,
        option=socket.SO_REUSEADDR,
        what="HTTP",
        hint="--port <another port> (env PORT)",
    )
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def reserve_grpc_port(host: str, port: int) -> socket.socket:
    """Binds (without listening) the port the workers' gRPC servers will share: a port another
    program holds is a clear error here, once, and port 0 becomes a real port. SO_REUSEPORT lets
    the workers bind it too; a bound socket that does not listen gets no connections."""
    return _bind(
        host,
        port,
        option=socket.SO_REUSEPORT,
        what="OTLP/gRPC",
        hint="--grpc-port <another port> (env OTEL_GRPC_PORT)",
    )


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
        parser.add_argument(
            "--workers",
            type=int,
            default=settings.STUDIO_WORKERS,
            help="processes sharing both ports, each with its own writer (STUDIO_WORKERS); "
            "more than one needs REDIS_URL",
        )

    def handle(self, *args: Any, **options: Any) -> None:

        from ingest.grpc import PortInUse, make_server
        from tracing import retention

        limit_heap_growth()

        workers: int = options["workers"]
        if workers < 1:
            raise CommandError(f"--workers must be at least 1, got {workers}", returncode=2)
        if workers > 1 and not settings.REDIS_URL:
            raise CommandError(
                f"--workers {workers} needs REDIS_URL: without Redis each worker keeps its live "
                "pages and its runs' sockets to itself, so pages would miss other workers' "
                "traces and answers to a run could not reach it. Set REDIS_URL or use --workers 1.",
                returncode=2,
            )
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
        if workers > 1:
            self.supervise(workers, http_socket, host, options["grpc_port"])
            return
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

        drained = serve([http_socket], grpc_server, purge=True)
        self.stdout.write("Studio stopped." if drained else "Studio stopped (writer busy).")
        sys.stdout.flush()

    def supervise(self, workers: int, http_socket: socket.socket, host: str, port: int) -> None:
        """Starts the workers and waits for them; a signal stops each once (a second one kills
        them). A worker that exits on its own stops the others: a supervisor such as systemd
        restarts Studio as a whole."""
        try:
            grpc_reservation = reserve_grpc_port(host, port)
        except CommandError:
            http_socket.close()
            raise
        grpc_port = grpc_reservation.getsockname()[1]
        shown_host = "localhost" if host in ("127.0.0.1", "0.0.0.0", "::", "::1") else host
        runtime.http_url = f"http://{shown_host}:{http_socket.getsockname()[1]}"
        runtime.grpc_address = f"http://{shown_host}:{grpc_port}"
        # The workers start from a fresh interpreter: what runstudio changed in the settings goes
        # with them.
        overrides = {
            "HOST": settings.HOST,
            "ALLOWED_HOSTS": settings.ALLOWED_HOSTS,
            "STUDIO_AUTH": settings.STUDIO_AUTH,
        }
        addresses = (runtime.http_url, runtime.grpc_address)
        # One private loopback listener per worker, where the others pass on requests for its
        # Socket.IO sessions (runs/affinity.py).
        private = [bind_http("127.0.0.1", 0) for _ in range(workers)]
        private_ports = tuple(sock.getsockname()[1] for sock in private)
        # The parent keeps no database connection (nor pool) open while it only waits.
        close_database_connections()
        context = multiprocessing.get_context("spawn")
        processes = [
            context.Process(
                target=run_worker,
                args=(
                    http_socket,
                    private[n],
                    n,
                    private_ports,
                    host,
                    grpc_port,
                    overrides,
                    addresses,
                ),
                name=f"studio-worker-{n + 1}",
            )
            for n in range(workers)
        ]
        stopping = False
        deadline = float("inf")

        def stop_workers(signum: int, frame: Any) -> None:
            nonlocal stopping, deadline
            for process in processes:
                if process.pid is not None and process.exitcode is None:
                    os.kill(process.pid, signal.SIGKILL if stopping else signal.SIGTERM)
            if not stopping:
                deadline = time.monotonic() + STOP_DEADLINE_SECONDS
            stopping = True

        signal.signal(signal.SIGTERM, stop_workers)
        signal.signal(signal.SIGINT, stop_workers)
        for process in processes:
            process.start()
        self.stdout.write(self.banner(http_socket.getsockname()[1], grpc_port, host))
        self.stdout.write(f"  workers         {workers} (STUDIO_WORKERS)\n")
        self.stdout.flush()
        failed: multiprocessing.process.BaseProcess | None = None
        while running := [p for p in processes if p.exitcode is None]:
            multiprocessing.connection.wait([p.sentinel for p in running], timeout=1)
            if time.monotonic() > deadline:
                # A worker past its grace and its writer's drain is stuck: what it acknowledged
                # is committed, what it did not, its exporters send again.
                logger.error("a worker did not stop in %d s; killing it", STOP_DEADLINE_SECONDS)
                stop_workers(signal.SIGKILL, None)
                deadline = float("inf")
            for process in processes:
                if process.exitcode is not None and not stopping and failed is None:
                    failed = process
                    stop_workers(signal.SIGTERM, None)
        for sock in (http_socket, grpc_reservation, *private):
            sock.close()
        if failed is not None:
            raise CommandError(
                f"{failed.name} exited with status {failed.exitcode}; Studio stopped.",
                returncode=1,
            )
        drained = all(p.exitcode == 0 for p in processes)
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


def serve(http_sockets: list[socket.socket], grpc_server: Any, *, purge: bool) -> bool:
    """Serves HTTP on `http_sockets` until SIGTERM or SIGINT, then stops both receivers and
    drains the writer. True once everything acknowledged is stored. With `purge`, this process
    also runs the background retention purge (one process of a Studio does)."""
    from ingest.writer import get_writer
    from tracing import retention

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
    if purge and settings.STUDIO_RETENTION_INTERVAL:
        purging = retention.start_background_purge(settings.STUDIO_RETENTION_INTERVAL)
    try:
        server.run(sockets=http_sockets)
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
    return drained


def close_database_connections() -> None:
    from django.db import connections

    for connection in connections.all(initialized_only=True):
        connection.close()
        if hasattr(connection, "close_pool"):
            connection.close_pool()


def run_worker(
    http_socket: socket.socket,
    private_socket: socket.socket,
    index: int,
    private_ports: tuple[int, ...],
    host: str,
    grpc_port: int,
    overrides: dict[str, Any],
    addresses: tuple[str, str],
) -> None:
    """One worker of `runstudio --workers N`, in a process of its own."""
    # Its own process group: Ctrl-C in a terminal reaches the parent only, which stops each
    # worker once, rather than every process hearing it twice.
    os.setpgrp()
    _stop_when_orphaned(os.getppid())
    limit_heap_growth()
    import django

    from studio.boot import load_settings

    load_settings()
    django.setup()
    for name, value in overrides.items():
        setattr(settings, name, value)
    from ingest.grpc import make_server
    from tracing import search

    # The parent sent `serving` before the workers existed: each worker indexes its own commits.
    search.indexer.start()
    runtime.migrated = True
    runtime.http_url, runtime.grpc_address = addresses
    runtime.worker, runtime.worker_ports = index, private_ports
    grpc_server, _ = make_server(host, grpc_port, share_port=True)
    runtime.grpc_listening = True
    drained = serve([http_socket, private_socket], grpc_server, purge=index == 0)
    from ingest import writer

    if writer._pool is not None:
        writer._pool.close()
    sys.stdout.flush()
    sys.stderr.flush()
    # Everything acknowledged is committed: exit now rather than wait at interpreter exit for
    # threads (the live publisher's, a client's) that a supervisor cannot see and nobody needs.
    os._exit(0 if drained else WRITER_BUSY_STATUS)


def _stop_when_orphaned(parent: int) -> None:
    """A parent killed outright cannot stop its workers: they stop (and drain) themselves."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()
