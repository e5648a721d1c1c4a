"""What this process is serving, as `runstudio` started it: read by /healthz and the pages that
show users where to point their exporters."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Runtime:
    http_url: str = ""
    grpc_address: str = ""
    grpc_listening: bool = False
    migrated: bool = False
    # Under runstudio --workers: this worker's index, and every worker's private loopback port
    # (where another worker passes on requests for this one's Socket.IO sessions).
    worker: int = 0
    worker_ports: tuple[int, ...] = ()


runtime = Runtime()
