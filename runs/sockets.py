"""The Socket.IO server AgentScope 1.0.x applications connect to (`/socket.io/`, namespace
`/python`, `auth={"run_id": ...}`): it tells which runs are alive, and carries a person's answers
to a waiting `UserAgent` (`forwardUserInput`).

Which socket belongs to which run is kept in this process's memory: runstudio serves everything
from one process, and a Studio that restarts has no sockets until the clients reconnect. A browser
(a request with an Origin) must come from Studio's own pages (studio.security).

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
from typing import Any

import socketio
from asgiref.sync import sync_to_async

from accounts.keys import KeyDenied, aproject_for_key, key_from_headers
from runs import writes
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
)

# run id -> its socket id, and back. A run's socket is the first that claimed it, until that one
# disconnects: another connection naming the same run_id cannot take its input requests over.
_socket_of_run: dict[str, str] = {}
_run_of_socket: dict[str, str] = {}


def mount(other_asgi_app: Any) -> Any:
    """The project's ASGI app with this server in front: `/socket.io/` (HTTP long-polling and
    websocket upgrades alike) comes here, every other request goes on to `other_asgi_app`."""
    return socketio.ASGIApp(sio, other_asgi_app=other_asgi_app, socketio_path="socket.io")


def is_connected(run_id: str) -> bool:
    return run_id in _socket_of_run


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
    if run_id in _socket_of_run:
        logger.warning("refused a second socket for run %s", run_id)
        raise socketio.exceptions.ConnectionRefusedError("this run is connected on another socket")
    # Claimed before the write below yields to the loop, so a racing second socket is refused.
    _socket_of_run[run_id] = sid
    _run_of_socket[sid] = run_id
    try:
        await sync_to_async(writes.mark_connected)(run_id, key_project)
    except BaseException as exc:
        # A refused connection never disconnects: its claim must not outlive it.
        del _socket_of_run[run_id], _run_of_socket[sid]
        if not isinstance(exc, writes.OtherProject):
            raise
        logger.warning("refused a socket for run %s: %s", run_id, exc)
        raise socketio.exceptions.ConnectionRefusedError(str(exc)) from None
    logger.info("run %s connected", run_id)


@sio.on("disconnect", namespace=NAMESPACE)
async def disconnect(sid: str, *reason: Any) -> None:
    run_id = _run_of_socket.pop(sid, None)
    if run_id is None:
        return
    del _socket_of_run[run_id]
    await sync_to_async(writes.mark_finished)(run_id)
    logger.info("run %s disconnected", run_id)


async def forward_user_input(
    run_id: str, request_id: str, text: str, structured: dict[str, Any] | None
) -> bool:
    """Sends a person's answer to the run's `UserAgent`; False when the run is not connected."""
    sid = _socket_of_run.get(run_id)
    if sid is None:
        return False
    await sio.emit(
        "forwardUserInput",
        (request_id, [{"type": "text", "text": text}], structured),
        to=sid,
        namespace=NAMESPACE,
    )
    return True
