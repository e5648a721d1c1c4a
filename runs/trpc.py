"""The AgentScope Studio calls an AgentScope 1.0.x application makes besides exporting traces:
`POST /trpc/registerRun`, `/trpc/pushMessage` and `/trpc/requestUserInput`, JSON in, JSON out.

The application blocks on each call (no timeout) and crashes when `registerRun` fails, so these
answer at once: validate, one short write, 200. Answers follow tRPC's shape (`{"result": {"data":
...}}`, errors as `{"error": {"message", "code"}}`), which is what AgentScope Studio speaks. Only
`Content-Type: application/json` is accepted (415 otherwise), which no page on another site can
send here without a CORS preflight.

With STUDIO_AUTH=login each call needs an ingest key (`Authorization: Bearer`, `X-API-Key`, or
the password of HTTP Basic, which is what `requests` makes of `http://studio:<key>@host:3000`):
401 `UNAUTHORIZED` without one, 403 `FORBIDDEN` when the run belongs to another project than
the key's. The run goes in the key's project.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from accounts.keys import KeyDenied, ingest_project
from runs import writes
from runs.ids import ID_RULE, is_valid_id


class Invalid(Exception):
    pass


def _ok(data: Any) -> JsonResponse:
    return JsonResponse({"result": {"data": data}})


def _error(message: str, code: str, status: int) -> JsonResponse:
    return JsonResponse({"error": {"message": message, "code": code}}, status=status)


def _bad_request(message: str) -> JsonResponse:
    return _error(message, "BAD_REQUEST", 400)


def _unauthorized(message: str) -> JsonResponse:
    response = _error(message, "UNAUTHORIZED", 401)
    response["WWW-Authenticate"] = 'Bearer realm="studio"'
    return response


def _unsupported_media_type(content_type: str) -> JsonResponse:
    message = f"the body must be application/json, not {content_type or 'untyped'}"
    return JsonResponse(
        {"error": {"message": message, "code": "UNSUPPORTED_MEDIA_TYPE"}}, status=415
    )


def _json_object(request: HttpRequest) -> dict[str, Any]:
    try:
        body = json.loads(request.body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise Invalid(f"the body is not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise Invalid("the body must be a JSON object")
    return body


def _str(data: Mapping[str, Any], key: str, *, required: bool = True, where: str = "") -> str:
    value = data.get(key)
    if value is None:
        if required:
            raise Invalid(f"{where}{key} is required")
        return ""
    if not isinstance(value, str):
        raise Invalid(f"{where}{key} must be a string")
    return value


def _id(data: Mapping[str, Any], key: str, *, where: str = "") -> str:
    # Ids end up in page URLs: a slash or a newline in one would break every page listing it.
    value = _str(data, key, where=where)
    if not is_valid_id(value):
        raise Invalid(f"{where}{key} must be {ID_RULE}, got {value[:80]!r}")
    return value


Handler = Callable[[dict[str, Any], str | None], Any]


def _trpc_view(handle: Handler) -> Callable[[HttpRequest], JsonResponse]:
    @csrf_exempt
    @require_POST
    def view(request: HttpRequest) -> JsonResponse:
        # The key first: nothing of the body is read for a caller who is not let in.
        try:
            key_project = ingest_project(request.headers)
        except KeyDenied as exc:
            return _unauthorized(str(exc))
        # CSRF-exempt, so the content type is the guard: a page on another site can only send
        # a form's types without a CORS preflight, and Studio grants none.
        if request.content_type.lower() != "application/json":
            return _unsupported_media_type(request.content_type)
        try:
            return _ok(handle(_json_object(request), key_project))
        except Invalid as exc:
            return _bad_request(str(exc))
        except writes.OtherProject as exc:
            return _error(str(exc), "FORBIDDEN", 403)

    view.__name__ = handle.__name__
    view.__doc__ = handle.__doc__
    return view


def _register_run(body: dict[str, Any], key_project: str | None) -> dict[str, Any]:
    """`{"id", "project", "name", "timestamp", "pid", "status", "run_dir"}`."""
    pid = body.get("pid")
    if pid is not None and (not isinstance(pid, int) or isinstance(pid, bool)):
        raise Invalid("pid must be an integer")
    run = writes.register_run(
        run_id=_id(body, "id"),
        project=_str(body, "project"),
        name=_str(body, "name"),
        pid=pid,
        client_timestamp=_str(body, "timestamp", required=False)[:64],
        run_dir=_str(body, "run_dir", required=False),
        key_project=key_project,
    )
    return {"id": run.id, "status": run.status}


def _push_message(body: dict[str, Any], key_project: str | None) -> dict[str, Any]:
    """`{"runId", "replyId", "replyName", "replyRole", "msg": {"id", "name", "role", "content",
    "metadata", "timestamp"}}`; a repeated `msg.id` is a streamed chunk replacing the last."""
    msg = body.get("msg")
    if not isinstance(msg, dict):
        raise Invalid("msg is required and must be an object")
    content = msg.get("content")
    if not isinstance(content, str | list):
        raise Invalid("msg.content must be a string or a list of blocks")
    metadata = msg.get("metadata")
    msg_id = _id(msg, "id", where="msg.")
    writes.push_message(
        writes.PushedMessage(
            run_id=_id(body, "runId"),
            msg_id=msg_id,
            name=_str(msg, "name", where="msg."),
            role=_str(msg, "role", where="msg.")[:32],
            content=content,
            metadata=metadata if metadata is not None else {},
            client_timestamp=_str(msg, "timestamp", required=False, where="msg.")[:64],
            reply_id=_str(body, "replyId", required=False)[:64],
            reply_name=_str(body, "replyName", required=False),
            reply_role=_str(body, "replyRole", required=False)[:32],
        ),
        key_project,
    )
    return {"id": msg_id}


def _request_user_input(body: dict[str, Any], key_project: str | None) -> dict[str, Any]:
    """`{"requestId", "runId", "agentId", "agentName", "structuredInput"}`: the agent then waits
    for `forwardUserInput` on the run's socket."""
    schema = body.get("structuredInput")
    if schema is not None and not isinstance(schema, dict):
        raise Invalid("structuredInput must be a JSON schema object or null")
    request = writes.request_user_input(
        request_id=_id(body, "requestId"),
        run_id=_id(body, "runId"),
        agent_id=_str(body, "agentId", required=False)[:64],
        agent_name=_str(body, "agentName", required=False),
        structured_schema=schema,
        key_project=key_project,
    )
    return {"requestId": request.request_id}


register_run = _trpc_view(_register_run)
push_message = _trpc_view(_push_message)
request_user_input = _trpc_view(_request_user_input)
