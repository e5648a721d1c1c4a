"""The Socket.IO server AgentScope 1.0.x applications connect to (`/socket.io/`, namespace
`/python`, `auth={"run_id": ...}`): it tells which runs are alive, and carries a person's answers
to a waiting `UserAgent` (`forwardUserInput`).

Which socket belongs to which run is kept in this process's memory when Studio is one process.
With REDIS_URL (several workers or hosts), it is kept in Redis, under a key with a time to live
that the process holding the socket keeps refreshing: any process can tell whether a run is
connected, a restarting one finishes only runs no live process holds, and python-socketio's
Redis manager carries an answer from the process that served the run page to the one holding the
run's socket. A browser (a request with an Origin) must come from Studio's own pages
(studio.security).

With STUDIO_AUTH=login a connection needs an ingest key of the run's project. The agentscope
client opens with an HTTP long-polling handshake made by `requests`, which sends the URL's
`studio:<key>@` as HTTP Basic, and the `environ` the connect handler gets is that handshake's
(the websocket upgrade that follows carries no credentials, but it only continues the Engine.IO
session the handshake opened). A client that cannot send headers may put the key in
`auth={"run_id": ..., "api_key": ...}`. This is the application's side only: no Studio page
opens a Socket.IO connection (the run page answers by a POST, with its session), so a browser's
session alone is not let in, and the default namespace `/` is closed.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Collection
from typing import Any

import redis
import socketio
from asgiref.sync import sync_to_async
from django.conf import settings

from accounts.keys import KeyDenied, aproject_for_key, key_from_headers
from runs import affinity, writes
from runs.ids import is_valid_id
from studio import security

logger = logging.getLogger(__name__)

NAMESPACE = "/python"


def _browser_origin_allowed(origin: str, environ: dict[str, Any]) -> bool:
    # Requests without an Origin are not a browser's (the agentscope app polls without one, and
    # its websocket upgrade names the URL it connects to): engine.io lets them through, and only
    # asks here whether to add CORS headers, which they need not.
    return bool(origin) and security.origin_allowed(origin, environ.get("HTTP_HOST", ""))


sio = socketio.AsyncServer(
    async_mode="asgi",
    logger=False,
    engineio_logger=False,
    cors_allowed_origins=_browser_origin_allowed,
    cors_credentials=False,
    # Only the application's namespace: python-socketio would otherwise accept anyone on `/`.
    namespaces=[NAMESPACE],
    client_manager=(
        socketio.AsyncRedisManager(settings.REDIS_URL, channel="studio-socketio")
        if settings.REDIS_URL
        else None
    ),
)


class LocalSockets:
    """Run id -> its socket id, in this process: right when Studio is one process."""

    def __init__(self) -> None:
        self._socket_of_run: dict[str, str] = {}

    def claim(self, run_id: str, sid: str) -> bool:
        return self._socket_of_run.setdefault(run_id, sid) == sid

    def release(self, run_id: str, sid: str) -> None:
        if self._socket_of_run.get(run_id) == sid:
            del self._socket_of_run[run_id]

    def socket_of(self, run_id: str) -> str | None:
        return self._socket_of_run.get(run_id)

    def live(self, run_ids: Collection[str]) -> set[str]:
        return {run_id for run_id in run_ids if run_id in self._socket_of_run}


class RedisSockets:
    """Run id -> its socket id, in Redis, shared by every process: a key per run, set by the
    process that holds the socket and refreshed by it every TTL/3 seconds, so that the key of a
    process that died goes within TTL seconds."""

    TTL = 30
    PREFIX = "studio:run-socket:"
    # Set or refresh a key only if it is ours or gone (Redis lost it): never take another's.
    _REFRESH = """
        local held = redis.call('GET', KEYS[1])
        if held == false or held == ARGV[1] then
            return redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
        end
        return false
    """
    _RELEASE = """
        if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
        return 0
    """

    def __init__(self, url: str) -> None:
        self.redis = redis.Redis.from_url(url, decode_responses=True)
        self._refresh = self.redis.register_script(self._REFRESH)
        self._release = self.redis.register_script(self._RELEASE)
        self._held: dict[str, str] = {}
        self._heartbeat: threading.Thread | None = None

    def claim(self, run_id: str, sid: str) -> bool:
        if not self.redis.set(self.PREFIX + run_id, sid, nx=True, ex=self.TTL):
            return False
        self._held[run_id] = sid
        if self._heartbeat is None:
            self._heartbeat = threading.Thread(
                target=self._beat, name="run-socket-heartbeat", daemon=True
            )
            self._heartbeat.start()
        return True

    def release(self, run_id: str, sid: str) -> None:
        if self._held.get(run_id) == sid:
            del self._held[run_id]
        self._release(keys=[self.PREFIX + run_id], args=[sid])

    def socket_of(self, run_id: str) -> str | None:
        return self.redis.get(self.PREFIX + run_id)

    def live(self, run_ids: Collection[str]) -> set[str]:
        ids = list(run_ids)
        if not ids:
            return set()
        found = self.redis.mget([self.PREFIX + run_id for run_id in ids])
        return {run_id for run_id, sid in zip(ids, found, strict=True) if sid is not None}

    def _beat(self) -> None:
        while True:
            time.sleep(self.TTL / 3)
            try:
                for run_id, sid in list(self._held.items()):
                    self._refresh(keys=[self.PREFIX + run_id], args=[sid, self.TTL])
            except redis.RedisError as exc:
                # The next beat tries again; the keys last TTL seconds, three beats.
                logger.warning("refreshing the run sockets in Redis failed: %s", exc)


registry: LocalSockets | RedisSockets = (
    RedisSockets(settings.REDIS_URL) if settings.REDIS_URL else LocalSockets()
)
# The sockets this process holds, socket id -> run id. A run's socket is the first that claimed
# it, until that one disconnects: another connection naming the same run_id (on any process)
# cannot take its input requests over.
_run_of_socket: dict[str, str] = {}


# Under runstudio --workers, a session's requests must reach the worker that holds it.
sio.eio.generate_id = affinity.session_id(sio.eio.generate_id)


def mount(other_asgi_app: Any) -> Any:
    """The project's ASGI app with this server in front: `/socket.io/` (HTTP long-polling and
    websocket upgrades alike) comes here, every other request goes on to `other_asgi_app`."""
    return affinity.route(
        socketio.ASGIApp(sio, other_asgi_app=other_asgi_app, socketio_path="socket.io")
    )


def is_connected(run_id: str) -> bool:
    return registry.socket_of(run_id) is not None


def live_runs(run_ids: Collection[str]) -> set[str]:
    """Those of `run_ids` whose socket some Studio process holds now."""
    return set(registry.live(run_ids))


def _claim(run_id: str, sid: str, key_project: str | None) -> bool:
    """Claims the run for this socket; False when another socket holds it. A refused connection
    never disconnects, so a claim whose write fails (writes.OtherProject included) is let go."""
    if not registry.claim(run_id, sid):
        return False
    try:
        writes.mark_connected(run_id, key_project)
    except BaseException:
        registry.release(run_id, sid)
        raise
    return True


def _release(run_id: str, sid: str) -> None:
    registry.release(run_id, sid)
    writes.mark_finished(run_id)


def _key(environ: dict[str, Any], auth: dict[str, Any]) -> str | None:
    headers = {
        "authorization": environ.get("HTTP_AUTHORIZATION", ""),
        "x-api-key": environ.get("HTTP_X_API_KEY", ""),
    }
    raw = key_from_headers(headers)
    if raw is None and isinstance(auth.get("api_key"), str):
        raw = auth["api_key"]
    return raw


@sio.on("connect", namespace=NAMESPACE)
async def connect(sid: str, environ: dict[str, Any], auth: Any = None) -> None:
    auth = auth if isinstance(auth, dict) else {}
    run_id = auth.get("run_id")
    if not isinstance(run_id, str) or not is_valid_id(run_id):
        raise socketio.exceptions.ConnectionRefusedError("auth must carry a valid run_id")
    try:
        key_project = await aproject_for_key(_key(environ, auth))
    except KeyDenied as exc:
        logger.warning("refused a socket for run %s: %s", run_id, exc)
        raise socketio.exceptions.ConnectionRefusedError(str(exc)) from None
    try:
        claimed = await sync_to_async(_claim)(run_id, sid, key_project)
    except writes.OtherProject as exc:
        logger.warning("refused a socket for run %s: %s", run_id, exc)
        raise socketio.exceptions.ConnectionRefusedError(str(exc)) from None
    if not claimed:
        logger.warning("refused a second socket for run %s", run_id)
        raise socketio.exceptions.ConnectionRefusedError("this run is connected on another socket")
    _run_of_socket[sid] = run_id
    logger.info("run %s connected", run_id)


@sio.on("disconnect", namespace=NAMESPACE)
async def disconnect(sid: str, *reason: Any) -> None:
    run_id = _run_of_socket.pop(sid, None)
    if run_id is None:
        return
    await sync_to_async(_release)(run_id, sid)
    logger.info("run %s disconnected", run_id)


async def forward_user_input(
    run_id: str, request_id: str, text: str, structured: dict[str, Any] | None
) -> bool:
    """Sends a person's answer to the run's `UserAgent`, through whichever process holds its
    socket; False when the run is not connected."""
    sid = await sync_to_async(registry.socket_of)(run_id)
    if sid is None:
        return False
    await sio.emit(
        "forwardUserInput",
        (request_id, [{"type": "text", "text": text}], structured),
        to=sid,
        namespace=NAMESPACE,
    )
    return True
