"""Studio answers only to its own names, and keeps its secret key.

A page on another site can make a visitor's browser talk to Studio: by rebinding its own name to
127.0.0.1 (then the browser sends `Host: evil.example` and treats Studio as that site), or by
opening a websocket (which browsers let any page do, sending its `Origin`). So every request and
connection must name an allowed host (`settings.ALLOWED_HOSTS`, built by `allowed_hosts`), and a
browser's websocket or Socket.IO connection must also come from one of them (`origin_allowed`).
The ASGI guard (`only_allowed_hosts`) applies the Host check to everything the server receives;
Django repeats it for its own requests through `ALLOWED_HOSTS`.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import secrets
import socket
import tempfile
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "[::1]")
WILDCARD_ADDRESSES = frozenset({"", "0.0.0.0", "::"})

# Sent on every HTTP response, Django's or not (Socket.IO, the guard's own 400s).
SECURITY_HEADERS = (
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"x-frame-options", b"DENY"),
)


def host_pattern(host: str) -> str:
    """An ALLOWED_HOSTS entry for a name or address: IPv6 in brackets, as a Host header has it."""
    host = host.strip().lower()
    with contextlib.suppress(ValueError):
        if ipaddress.ip_address(host).version == 6:
            return f"[{host}]"
    return host


def machine_hosts() -> list[str]:
    """The names and addresses this machine is known by, as far as it can tell: its host name,
    what that resolves to, and the addresses its default routes leave from. Not every address of
    every interface, nor names given to it elsewhere (DNS, a proxy): those go in
    STUDIO_ALLOWED_HOSTS."""
    names = {socket.gethostname(), socket.getfqdn()}
    found = set(names)
    for name in names:
        with contextlib.suppress(OSError):
            found.update(str(info[4][0]) for info in socket.getaddrinfo(name, None))
    for family, probe in ((socket.AF_INET, "192.0.2.1"), (socket.AF_INET6, "2001:db8::1")):
        # Connecting a UDP socket sends nothing; it only picks the source address for the route.
        with contextlib.suppress(OSError), socket.socket(family, socket.SOCK_DGRAM) as probe_sock:
            probe_sock.connect((probe, 9))
            found.add(probe_sock.getsockname()[0])
    return sorted(host_pattern(host.split("%")[0]) for host in found if host)


def allowed_hosts(bound: str, extra: Iterable[str]) -> list[str]:
    """Loopback names, the bound address (or, bound to every interface, `machine_hosts`), and
    `extra` (STUDIO_ALLOWED_HOSTS): Django's ALLOWED_HOSTS for a Studio bound to `bound`."""
    hosts = [*LOOPBACK_HOSTS]
    hosts += machine_hosts() if bound.strip() in WILDCARD_ADDRESSES else [host_pattern(bound)]
    hosts += [host_pattern(host) for host in extra]
    return list(dict.fromkeys(hosts))


def host_allowed(host: str) -> bool:
    """Whether a Host header (port included or not) names this Studio."""
    from django.http.request import split_domain_port, validate_host  # not while settings load

    domain, _port = split_domain_port(host)
    return bool(domain) and validate_host(domain, settings.ALLOWED_HOSTS)


def origin_allowed(origin: str, host: str) -> bool:
    """Whether a browser's `Origin` is this Studio's own page: an allowed host on the port the
    request came to (so another local server's page, on localhost:8080 say, is refused), or an
    origin listed in CSRF_TRUSTED_ORIGINS (a proxy that serves Studio under another name)."""
    from django.http.request import split_domain_port

    if origin in settings.CSRF_TRUSTED_ORIGINS:
        return True
    parts = urlsplit(origin)
    if parts.scheme not in ("http", "https") or not host_allowed(parts.netloc):
        return False
    return split_domain_port(parts.netloc)[1] == split_domain_port(host)[1] and host_allowed(host)


def header(headers: Iterable[tuple[bytes, bytes]], name: bytes) -> str | None:
    for key, value in headers:
        if key == name:
            return value.decode("latin-1")
    return None


def connection_allowed(scope: MutableMapping[str, Any]) -> bool:
    """For a websocket: an allowed Host (browsers always send one), and if a browser opened it
    (browsers always send Origin on a websocket; other clients need not), an allowed Origin."""
    headers = scope.get("headers", [])
    host = header(headers, b"host")
    origin = header(headers, b"origin")
    if origin is not None:
        return origin_allowed(origin, host or "")
    return host is None or host_allowed(host)


Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def only_allowed_hosts(app: ASGIApp) -> ASGIApp:
    """The Host check for everything the server receives, Socket.IO and websockets included (they
    do not pass through Django's middleware), and the security headers on every response."""

    async def guarded(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await app(scope, receive, send)
            return
        host = header(scope.get("headers", []), b"host")
        # A browser always sends Host; a client that sends none is not a page on another site.
        if host is not None and not host_allowed(host):
            if scope["type"] == "websocket":
                await receive()  # websocket.connect
                await send({"type": "websocket.close", "code": 1008})
            else:
                await _bad_host(send)
            return
        if scope["type"] == "websocket":
            await app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _value in message.get("headers", [])}
                missing = [item for item in SECURITY_HEADERS if item[0] not in present]
                if missing:
                    message = {**message, "headers": [*message.get("headers", []), *missing]}
            await send(message)

        await app(scope, receive, send_with_headers)

    return guarded


async def _bad_host(send: Send) -> None:
    body = b"Bad Request: this host name is not allowed (see STUDIO_ALLOWED_HOSTS)\n"
    await send(
        {
            "type": "http.response.start",
            "status": 400,
            "headers": [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", str(len(body)).encode()),
                *SECURITY_HEADERS,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


SECRET_KEY_FILE = "secret_key"


def stored_secret_key(data_dir: Path) -> str:
    """The key kept in `data_dir`, made on first use. Processes starting together agree: each
    writes a candidate to a private temporary file and links it into place, which only the first
    can do; the others read the winner's. The file is never seen half-written."""
    path = data_dir / SECRET_KEY_FILE
    try:
        with contextlib.suppress(FileNotFoundError):
            return _read_key(path)
        data_dir.mkdir(parents=True, exist_ok=True)
        fd, candidate = tempfile.mkstemp(dir=data_dir, prefix=".secret_key.")  # mode 0600
        try:
            with os.fdopen(fd, "w") as file:
                file.write(secrets.token_urlsafe(50))
                file.flush()
                os.fsync(file.fileno())
            with contextlib.suppress(FileExistsError):
                os.link(candidate, path)
        finally:
            os.unlink(candidate)
        return _read_key(path)
    except OSError as exc:
        raise ImproperlyConfigured(
            f"Cannot keep a secret key in {data_dir} ({exc.strerror}): make STUDIO_DATA_DIR "
            "writable, or set SECRET_KEY"
        ) from None


def _read_key(path: Path) -> str:
    key = path.read_text().strip()
    if len(key) < 32:
        raise ImproperlyConfigured(f"{path} holds no usable secret key; delete it for a new one")
    return key
