"""API keys: making them, and finding the key a request carries.

A key is 256 random bits; only its sha256 is stored. Lookup is by digest, one indexed query per
request with no cache, so a revoked key stops working at once in every process.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import secrets
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor

from django.conf import settings
from django.db import InterfaceError, OperationalError, connection
from django.utils import timezone

from accounts.models import ApiKey

PREFIX = "studio_"
SHOWN_PREFIX_CHARS = 12


class KeyDenied(Exception):
    """Sign-in is on and the request carries no valid ingest key (HTTP 401 / UNAUTHENTICATED)."""


def digest(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def create_key(
    kind: str, *, project: str = "", user: object = None, name: str = ""
) -> tuple[ApiKey, str]:
    """A new key and its one-time plain text."""
    raw = PREFIX + secrets.token_urlsafe(32)
    key = ApiKey.objects.create(
        kind=kind,
        name=name,
        project=project,
        user=user,
        prefix=raw[:SHOWN_PREFIX_CHARS],
        digest=digest(raw),
    )
    return key, raw


def revoke(key: ApiKey) -> None:
    if key.revoked_at is None:
        key.revoked_at = timezone.now()
        key.save(update_fields=["revoked_at"])


def key_from_headers(headers: Mapping[str, str]) -> str | None:
    """The key in `Authorization: Bearer`, `X-API-Key`, or the password of HTTP Basic (what
    `requests` sends for `http://studio:<key>@host/`). `headers` is case-insensitive (Django's
    request.headers) or has lowercase names (gRPC metadata, ASGI scopes)."""
    value = headers.get("x-api-key")
    if value:
        return value.strip() or None
    authorization = (headers.get("authorization") or "").strip()
    scheme, _, credentials = authorization.partition(" ")
    scheme = scheme.lower()
    credentials = credentials.strip()
    if scheme == "bearer" and credentials:
        return credentials
    if scheme == "basic" and credentials:
        try:
            decoded = base64.b64decode(credentials, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return None
        return decoded.partition(":")[2] or None
    return None


def find_key(raw: str | None, kind: str) -> ApiKey | None:
    """The active key of this kind whose text is `raw`, or None."""
    if not raw or len(raw) > 200:
        return None
    wanted = digest(raw)
    key = ApiKey.objects.active().filter(digest=wanted, kind=kind).select_related("user").first()
    # The lookup is by digest already; comparing again costs nothing and keeps timing flat.
    if key is None or not hmac.compare_digest(key.digest, wanted):
        return None
    if kind == ApiKey.Kind.READ and (key.user is None or not key.user.is_active):
        return None
    return key


def ingest_project(headers: Mapping[str, str]) -> str | None:
    """The one check every ingest path makes (OTLP/HTTP, gRPC, /trpc, Socket.IO): the project of
    the ingest key `headers` carry. With STUDIO_AUTH=login a missing or wrong key raises
    KeyDenied; with `none` a key is optional (a valid one still names the project)."""
    return project_for_key(key_from_headers(headers))


def project_for_key(raw: str | None) -> str | None:
    login = settings.STUDIO_AUTH == "login"
    if raw is None:
        if login:
            raise KeyDenied("an ingest key is required: send Authorization: Bearer <key>")
        return None
    project = _ingest_key_project(raw)
    if project is None and login:
        raise KeyDenied("the ingest key is unknown or revoked")
    return project


_INGEST_SQL = (
    f"SELECT digest, project FROM {ApiKey._meta.db_table} "
    "WHERE digest = %s AND kind = 'ingest' AND revoked_at IS NULL"
)


def _ingest_key_project(raw: str) -> str | None:
    # Plain SQL on the unique digest index: on every ingest request the ORM's own work
    # would cost more than the query.
    if len(raw) > 200:
        return None
    wanted = digest(raw)
    with connection.cursor() as cursor:
        cursor.execute(_INGEST_SQL, [wanted])
        row = cursor.fetchone()
    if row is None or not hmac.compare_digest(row[0], wanted):
        return None
    return row[1]


# The receivers' lookups run on a few long-lived threads that keep their database connections:
# sync_to_async would start a thread, and open a connection, for every request.
_lookups = ThreadPoolExecutor(max_workers=4, thread_name_prefix="studio-keys")


def _project_for_key_reconnecting(raw: str | None) -> str | None:
    try:
        return project_for_key(raw)
    except (InterfaceError, OperationalError):
        # This thread's connection outlived the database's (a restart): once more, afresh.
        connection.close()
        return project_for_key(raw)


async def aingest_project(headers: Mapping[str, str]) -> str | None:
    return await aproject_for_key(key_from_headers(headers))


async def aproject_for_key(raw: str | None) -> str | None:
    # No thread hop when nothing is to be looked up: the laptop default pays nothing.
    if raw is None and settings.STUDIO_AUTH != "login":
        return None
    if raw is None:
        return project_for_key(None)  # raises KeyDenied, no lookup needed
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_lookups, _project_for_key_reconnecting, raw)
