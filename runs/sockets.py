"""The Socket.IO server AgentScope 1.0.x applications connect to (`/socket.io/`, namespace
`/python`, `auth={"run_id": ...}`): it tells which runs are alive, and carries a person's answers
to a waiting `UserAgent` (`forwardUserInput`).

Which socket belongs to which run is kept in this process's memory: runstudio serves everything
from one process, and a Studio that restarts has no sockets until the clients reconnect. A browser
(a request with an Origin) must come from Studio's own pages (studio.security).
"""

from __future__ import annotations

import logging
from typing import Any

import socketio
from asgiref.sync import sync_to_async

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


@sio.on("connect", namespace=NAMESPACE)
async def connect(sid: str, environ: dict[str, Any], auth: Any = None) -> None:
    run_id = auth.get("run_id") if isinstance(auth, dict) else None
    if not isinstance(run_id, str) or not is_valid_id(run_id):
        raise socketio.exceptions.ConnectionRefusedError("auth must carry a valid run_id")
    if run_id in _socket_of_run:
        logger.warning("refused a second socket for run %s", run_id)
        raise socketio.exceptions.ConnectionRefusedError("this run is connected on another socket")
    _socket_of_run[run_id] = sid
    _run_of_socket[sid] = run_id
    await sync_to_async(writes.mark_connected)(run_id)
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
