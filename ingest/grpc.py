"""The OTLP/gRPC receiver: `opentelemetry.proto.collector.trace.v1.TraceService/Export`.

It shares the decoder and the writer with the HTTP receiver. Requests arrive as raw bytes (no
deserializer), so a body that does not parse is answered INVALID_ARGUMENT by us rather than a
generic error by grpcio.
"""

from __future__ import annotations

import logging
from concurrent import futures

import grpc
from django.conf import settings
from django.db import InterfaceError, OperationalError

from accounts.keys import KeyDenied, ingest_project
from ingest import otlp, workers
from ingest.writer import DatabaseUnavailable, Unavailable, accept

logger = logging.getLogger(__name__)

SERVICE = "opentelemetry.proto.collector.trace.v1.TraceService"


class PortInUse(Exception):
    pass


def export(request: bytes, context: grpc.ServicerContext) -> bytes:
    try:
        project = ingest_project(dict(context.invocation_metadata()))
    except KeyDenied as exc:
        context.abort(grpc.StatusCode.UNAUTHENTICATED, str(exc))
    except (OperationalError, InterfaceError):
        # The key could not be looked up (the database restarting): exporters retry UNAVAILABLE.
        context.abort(grpc.StatusCode.UNAVAILABLE, "the database is unavailable; retry")
    try:
        batch, future = accept(request, otlp.PROTOBUF, project)
    except Unavailable as exc:
        context.abort(grpc.StatusCode.UNAVAILABLE, str(exc))
    except otlp.DecodeError as exc:
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
    try:
        refused = future.result(timeout=settings.STUDIO_WRITE_TIMEOUT)
    except TimeoutError:
        context.abort(grpc.StatusCode.UNAVAILABLE, "the database is busy; retry")
    except DatabaseUnavailable:
        # Nothing was stored, and the failure may pass: exporters retry UNAVAILABLE only.
        context.abort(grpc.StatusCode.UNAVAILABLE, "the database is unavailable; retry")
    except Exception:
        logger.exception("storing a batch of spans failed")
        context.abort(grpc.StatusCode.INTERNAL, "storing the spans failed; see the Studio log")
    batch.count_refused(refused)
    return otlp.response_message(batch).SerializeToString()


def make_server(
    host: str, port: int, max_workers: int = 16, *, share_port: bool = False
) -> tuple[grpc.Server, int]:
    """A started gRPC server on host:port; port 0 picks a free one. Returns (server, port).
    `share_port`: listen beside the other workers of one runstudio (SO_REUSEPORT)."""
    server = grpc.server(
        futures.ThreadPoolExecutor(
            max_workers=max_workers,
            thread_name_prefix="otlp-grpc",
            initializer=workers.lower_priority,
            initargs=(settings.STUDIO_INGEST_NICENESS,),
        ),
        options=[
            # Without this, grpcio shares a port already in use instead of failing.
            ("grpc.so_reuseport", 1 if share_port else 0),
            ("grpc.max_receive_message_length", settings.STUDIO_MAX_BODY_BYTES),
        ],
    )
    handler = grpc.method_handlers_generic_handler(
        SERVICE, {"Export": grpc.unary_unary_rpc_method_handler(export)}
    )
    server.add_generic_rpc_handlers((handler,))
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        bound = server.add_insecure_port(address)
    except RuntimeError:
        bound = 0
    if not bound:
        raise PortInUse(f"cannot listen for OTLP/gRPC on {address}: the port is already in use")
    server.start()
    return server, bound
