"""Kafka Connect's REST API over the herder, served by aiohttp.

Paths, status codes and bodies follow Connect, errors included (`{"error_code": ..., "message": ...}`:
404 for an unknown connector, 409 while the worker is still reading its state or for a name already
taken, 400 for a bad config), so that `fraudstream connect apply`, curl recipes and Connect's own
tooling work against either worker.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from fraudstream.basicauth import BasicAuth
from fraudstream.requestbody import BadBody, read_json
from stack.connect import definitions as d
from stack.connect.herder import Conflict, Herder, NotFound, plugin_class
from stack.connect.settings import ConfigError, default_of, resolve, validate

logger = logging.getLogger(__name__)

HERDER = web.AppKey("herder", Herder)
READY = web.AppKey("ready", asyncio.Event)
INFO = web.AppKey("info", dict)

CONNECT_VERSION = "3.9.0"
routes = web.RouteTableDef()
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ConnectError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


def error_body(status: int, message: str) -> web.Response:
    return web.json_response({"error_code": status, "message": message}, status=status)


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    if not request.app[READY].is_set() and request.path not in ("/", "/metrics"):
        return error_body(
            409,
            "Cannot complete request momentarily due to no known leader URL, likely because a rebalance was underway.",
        )
    try:
        return await handler(request)
    except ConnectError as exc:
        return error_body(exc.status, exc.message)
    except NotFound as exc:
        return error_body(404, str(exc))
    except Conflict as exc:
        return error_body(409, str(exc))
    except ConfigError as exc:
        return error_body(
            400,
            f"{exc}\nYou can also find the above list of errors at the endpoint "
            f"`/connector-plugins/{{connectorType}}/config/validate`",
        )
    except web.HTTPException as exc:
        if exc.status >= 400:
            return error_body(exc.status, exc.reason)
        raise
    except Exception as exc:  # Connect answers 500 with the message; the trace goes to the log
        logger.exception("%s %s failed", request.method, request.path)
        return error_body(500, str(exc))


def _herder(request: web.Request) -> Herder:
    return request.app[HERDER]


async def _call(method: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Herder calls block (they start and join task threads): run them off the event loop."""
    return await asyncio.to_thread(method, *args, **kwargs)


async def _json(request: web.Request) -> Any:
    try:
        return await read_json(request)
    except BadBody as exc:
        raise ConnectError(exc.status, exc.message) from None


def _config_map(body: Any) -> dict[str, str]:
    if not isinstance(body, dict) or not all(isinstance(k, str) for k in body):
        raise ConnectError(400, "Connector configuration must be a JSON object of strings")
    return {key: value if isinstance(value, str) else json.dumps(value) for key, value in body.items()}


def _flag(request: web.Request, name: str) -> bool:
    return request.query.get(name, "false").lower() == "true"


# -- the worker ----------------------------------------------------------------------------------------


@routes.get("/")
async def root(request: web.Request) -> web.Response:
    if not request.app[READY].is_set():
        return error_body(503, "the worker is still reading its state from Kafka")
    return web.json_response(request.app[INFO])


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    body = generate_latest(_herder(request).metrics.registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


# -- connectors ----------------------------------------------------------------------------------------


@routes.get("/connectors")
async def list_connectors(request: web.Request) -> web.Response:
    herder = _herder(request)
    names = herder.names()
    expand = request.query.getall("expand", [])
    if not expand:
        return web.json_response(names)
    result: dict[str, Any] = {}
    for name in names:
        entry: dict[str, Any] = {}
        try:
            if "status" in expand:
                entry["status"] = herder.status(name)
            if "info" in expand:
                entry["info"] = herder.info(name)
        except NotFound:  # deleted meanwhile
            continue
        result[name] = entry
    return web.json_response(result)


@routes.post("/connectors")
async def create_connector(request: web.Request) -> web.Response:
    body = await _json(request)
    if not isinstance(body, dict) or not isinstance(body.get("config"), dict):
        raise ConnectError(400, 'Request body must be {"name": ..., "config": {...}}')
    config = _config_map(body["config"])
    name = body.get("name") or config.get("name")
    if not name:
        raise ConnectError(400, "Connector name configuration (name) is required")
    if config.get("name", name) != name:
        raise ConnectError(
            400, f"Connector name configuration ({config['name']}) doesn't match connector name in the URL ({name})"
        )
    initial = {"RUNNING": "STARTED", "PAUSED": "PAUSED"}.get(str(body.get("initial_state", "RUNNING")).upper())
    if initial is None:
        raise ConnectError(400, f"initial_state must be RUNNING or PAUSED here, not {body['initial_state']}")
    herder = _herder(request)
    await _call(herder.put, name, config, create_only=True, initial_state=initial)
    return web.json_response(herder.info(name), status=201)


@routes.get("/connectors/{name}")
async def get_connector(request: web.Request) -> web.Response:
    return web.json_response(_herder(request).info(request.match_info["name"]))


@routes.get("/connectors/{name}/config")
async def get_config(request: web.Request) -> web.Response:
    return web.json_response(_herder(request).get(request.match_info["name"]).config)


@routes.put("/connectors/{name}/config")
async def put_config(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    config = _config_map(await _json(request))
    if config.get("name", name) != name:
        raise ConnectError(
            400, f"Connector name configuration ({config['name']}) doesn't match connector name in the URL ({name})"
        )
    herder = _herder(request)
    created = await _call(herder.put, name, config)
    return web.json_response(herder.info(name), status=201 if created else 200)


@routes.get("/connectors/{name}/status")
async def get_status(request: web.Request) -> web.Response:
    return web.json_response(_herder(request).status(request.match_info["name"]))


@routes.get("/connectors/{name}/tasks")
async def get_tasks(request: web.Request) -> web.Response:
    return web.json_response(_herder(request).task_configs(request.match_info["name"]))


@routes.get("/connectors/{name}/tasks/{task}/status")
async def get_task_status(request: web.Request) -> web.Response:
    name, task = request.match_info["name"], request.match_info["task"]
    for entry in _herder(request).status(name)["tasks"]:
        if str(entry["id"]) == task:
            return web.json_response(entry)
    raise NotFound(f"Task {name}-{task} not found")


@routes.get("/connectors/{name}/offsets")
async def get_offsets(request: web.Request) -> web.Response:
    herder = _herder(request)
    return web.json_response(await _call(herder.offsets, request.match_info["name"]))


@routes.put("/connectors/{name}/pause")
async def pause(request: web.Request) -> web.Response:
    herder = _herder(request)
    await _call(herder.pause, request.match_info["name"])
    return web.Response(status=202)


@routes.put("/connectors/{name}/resume")
async def resume(request: web.Request) -> web.Response:
    herder = _herder(request)
    await _call(herder.resume, request.match_info["name"])
    return web.Response(status=202)


@routes.post("/connectors/{name}/restart")
async def restart(request: web.Request) -> web.Response:
    name, herder = request.match_info["name"], _herder(request)
    include_tasks, only_failed = _flag(request, "includeTasks"), _flag(request, "onlyFailed")
    await _call(herder.restart, name, include_tasks, only_failed)
    if include_tasks or only_failed:
        return web.json_response(herder.status(name), status=202)
    return web.Response(status=204)


@routes.post("/connectors/{name}/tasks/{task}/restart")
async def restart_task(request: web.Request) -> web.Response:
    herder = _herder(request)
    try:
        task = int(request.match_info["task"])
    except ValueError:
        raise ConnectError(404, f"Task {request.match_info['task']} not found") from None
    await _call(herder.restart_task, request.match_info["name"], task)
    return web.Response(status=204)


@routes.delete("/connectors/{name}")
async def delete_connector(request: web.Request) -> web.Response:
    herder = _herder(request)
    await _call(herder.delete, request.match_info["name"])
    return web.Response(status=204)


# -- plugins -------------------------------------------------------------------------------------------


@routes.get("/connector-plugins")
async def plugins(request: web.Request) -> web.Response:
    found = [{"class": d.S3_SINK_CLASS, "type": "sink", "version": d.S3_SINK_VERSION}]
    if request.query.get("connectorsOnly", "true").lower() == "false":
        found += [{"class": name, "type": "converter", "version": CONNECT_VERSION} for name in d.CONVERTERS]
    return web.json_response(found)


@routes.put("/connector-plugins/{plugin}/config/validate")
async def validate_config(request: web.Request) -> web.Response:
    plugin = plugin_class(request.match_info["plugin"])
    config = _config_map(await _json(request))
    given = config.get("connector.class")
    if given is not None and plugin_class_or_none(given) != plugin:
        raise ConnectError(
            400, f"Included connector type {given} does not match request type {request.match_info['plugin']}"
        )
    herder = _herder(request)
    return web.json_response(validation_response(plugin, config, herder))


def plugin_class_or_none(name: str) -> str | None:
    try:
        return plugin_class(name)
    except NotFound:
        return None


def validation_response(plugin: str, config: dict[str, str], herder: Herder) -> dict[str, Any]:
    """Connect's ConfigInfos: every key's definition beside its value, recommended values and errors."""
    _, errors = validate(config, herder.environ, herder.defaults)
    resolved, _ = resolve(config, herder.environ)
    configs = []
    for order, key in enumerate(d.KEYS, start=1):
        definition = {
            "name": key.name,
            "type": key.type,
            "required": key.required,
            "default_value": default_of(key),
            "importance": key.importance,
            "documentation": key.documentation,
            "group": key.group,
            "width": "NONE",
            "display_name": key.name,
            "dependents": [],
            "order": order,
        }
        value = resolved.get(key.name, herder.defaults.get(key.name, default_of(key)))
        configs.append(
            {
                "definition": definition,
                "value": {
                    "name": key.name,
                    "value": value,
                    "recommended_values": list(key.choices),
                    "errors": errors.get(key.name, []),
                    "visible": True,
                },
            }
        )
    for name in sorted(set(errors) - set(d.KEYS_BY_NAME)):  # e.g. a converter setting naming a missing variable
        if errors[name]:
            definition = {
                "name": name,
                "type": "STRING",
                "required": False,
                "default_value": None,
                "importance": "LOW",
                "documentation": "",
                "group": "Common",
                "width": "NONE",
                "display_name": name,
                "dependents": [],
                "order": len(configs) + 1,
            }
            configs.append(
                {
                    "definition": definition,
                    "value": {
                        "name": name,
                        "value": resolved.get(name),
                        "recommended_values": [],
                        "errors": errors[name],
                        "visible": True,
                    },
                }
            )
    return {
        "name": plugin,
        "error_count": sum(len(messages) for messages in errors.values()),
        "groups": list(d.GROUPS),
        "configs": configs,
    }


#: Connect's answer to a request without valid credentials, and the realm of its JAAS configuration.
UNAUTHORIZED = {"error_code": 401, "message": "Unauthorized"}
REALM = "KafkaConnect"


def create_app(herder: Herder, info: dict[str, Any], auth: BasicAuth | None = None) -> web.Application:
    """The REST API; with `auth`, every request must carry a user's credentials (HTTP basic)."""
    app = web.Application(middlewares=[errors] if auth is None else [auth.middleware(UNAUTHORIZED), errors])
    app[HERDER] = herder
    app[READY] = asyncio.Event()
    app[INFO] = info
    app.add_routes(routes)
    return app
