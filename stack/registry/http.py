"""The REST API of Confluent Schema Registry, served by aiohttp over a `Registry`.

Bodies are JSON with Confluent's content type (`application/vnd.schemaregistry.v1+json`; plain JSON is
accepted and returned when asked for), errors are `{"error_code": ..., "message": ...}`, and every data
endpoint answers 503 until the store has read the `_schemas` topic to its end (GET /subjects is the
health check).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from fraudstream.basicauth import BasicAuth
from fraudstream.requestbody import BadBody, read_json
from stack.registry import errors
from stack.registry.schemas import SCHEMA_TYPES, Schema
from stack.registry.service import Registry

logger = logging.getLogger(__name__)

CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"
REGISTRY_KEY = web.AppKey("registry", Registry)
METRICS_KEY = web.AppKey("metrics", CollectorRegistry)

routes = web.RouteTableDef()
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _content_type(request: web.Request) -> str:
    """Confluent's own type unless the client asked for plain JSON only."""
    accept = request.headers.get("Accept", "")
    if "application/json" in accept and "schemaregistry" not in accept:
        return "application/json"
    return CONTENT_TYPE


def reply(request: web.Request, data: Any, status: int = 200) -> web.Response:
    return web.Response(text=json.dumps(data), status=status, content_type=_content_type(request))


def _flag(request: web.Request, name: str) -> bool:
    return request.query.get(name, "false").lower() == "true"


async def _body(request: web.Request) -> Any:
    try:
        return await read_json(request)
    except BadBody as exc:
        raise errors.RegistryError(exc.status, exc.message) from None


def _registry(request: web.Request) -> Registry:
    return request.app[REGISTRY_KEY]


# -- service ------------------------------------------------------------------------------------


@routes.get("/")
async def root(request: web.Request) -> web.Response:
    return reply(request, {})


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    body = generate_latest(request.app[METRICS_KEY])
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


# -- schemas by id ------------------------------------------------------------------------------


@routes.get("/schemas/types")
async def schema_types(request: web.Request) -> web.Response:
    return reply(request, list(SCHEMA_TYPES))


@routes.get(r"/schemas/ids/{id:\d+}")
async def schema_by_id(request: web.Request) -> web.Response:
    return reply(request, _registry(request).schema(int(request.match_info["id"])).to_json())


@routes.get(r"/schemas/ids/{id:\d+}/schema")
async def schema_text_by_id(request: web.Request) -> web.Response:
    return web.Response(
        text=_registry(request).schema(int(request.match_info["id"])).text, content_type=_content_type(request)
    )


@routes.get("/schemas")
async def all_schemas(request: web.Request) -> web.Response:
    """Every version of every subject (`subjectPrefix`, `deleted`, `latestOnly` as Confluent's)."""
    registry, deleted = _registry(request), _flag(request, "deleted")
    found = []
    for subject in registry.subjects(request.query.get("subjectPrefix", ""), deleted):
        subject_versions = registry.versions(subject, deleted)
        found += subject_versions[-1:] if _flag(request, "latestOnly") else subject_versions
    return reply(request, [v.to_json() for v in found])


@routes.get(r"/schemas/ids/{id:\d+}/versions")
async def schema_versions(request: web.Request) -> web.Response:
    users = _registry(request).schema_users(int(request.match_info["id"]), _flag(request, "deleted"))
    return reply(request, [{"subject": v.subject, "version": v.version} for v in users])


@routes.get(r"/schemas/ids/{id:\d+}/subjects")
async def schema_subjects(request: web.Request) -> web.Response:
    users = _registry(request).schema_users(int(request.match_info["id"]), _flag(request, "deleted"))
    return reply(request, sorted({v.subject for v in users}))


# -- subjects -----------------------------------------------------------------------------------


@routes.get("/subjects")
async def subjects(request: web.Request) -> web.Response:
    names = _registry(request).subjects(
        request.query.get("subjectPrefix", ""), _flag(request, "deleted"), _flag(request, "deletedOnly")
    )
    return reply(request, names)


@routes.post("/subjects/{subject}")
async def lookup(request: web.Request) -> web.Response:
    schema = Schema.from_request(await _body(request))
    found = _registry(request).lookup(request.match_info["subject"], schema, _flag(request, "deleted"))
    return reply(request, found.to_json())


@routes.delete("/subjects/{subject}")
async def delete_subject(request: web.Request) -> web.Response:
    deleted = await _registry(request).delete_subject(request.match_info["subject"], _flag(request, "permanent"))
    return reply(request, deleted)


@routes.get("/subjects/{subject}/versions")
async def versions(request: web.Request) -> web.Response:
    found = _registry(request).versions(request.match_info["subject"], _flag(request, "deleted"))
    return reply(request, [v.version for v in found])


@routes.post("/subjects/{subject}/versions")
async def register(request: web.Request) -> web.Response:
    schema = Schema.from_request(await _body(request))
    registered = await _registry(request).register(request.match_info["subject"], schema)
    return reply(request, {"id": registered.schema_id})


@routes.get("/subjects/{subject}/versions/{version}")
async def version(request: web.Request) -> web.Response:
    info = request.match_info
    found = _registry(request).version(info["subject"], info["version"], _flag(request, "deleted"))
    return reply(request, found.to_json())


@routes.get("/subjects/{subject}/versions/{version}/schema")
async def version_schema(request: web.Request) -> web.Response:
    info = request.match_info
    found = _registry(request).version(info["subject"], info["version"], _flag(request, "deleted"))
    return web.Response(text=found.schema.text, content_type=_content_type(request))


@routes.get("/subjects/{subject}/versions/{version}/referencedby")
async def referenced_by(request: web.Request) -> web.Response:
    info = request.match_info
    return reply(request, _registry(request).referenced_by(info["subject"], info["version"]))


@routes.delete("/subjects/{subject}/versions/{version}")
async def delete_version(request: web.Request) -> web.Response:
    info = request.match_info
    number = await _registry(request).delete_version(info["subject"], info["version"], _flag(request, "permanent"))
    return reply(request, number)


# -- compatibility ------------------------------------------------------------------------------


@routes.post("/compatibility/subjects/{subject}/versions/{version}")
@routes.post("/compatibility/subjects/{subject}/versions")
async def test_compatibility(request: web.Request) -> web.Response:
    schema = Schema.from_request(await _body(request))
    problems = _registry(request).test_compatibility(
        request.match_info["subject"], schema, request.match_info.get("version")
    )
    result: dict[str, Any] = {"is_compatible": not problems}
    if _flag(request, "verbose"):
        result["messages"] = problems
    return reply(request, result)


# -- configuration ------------------------------------------------------------------------------


@routes.get("/config")
@routes.get("/config/{subject}")
async def get_config(request: web.Request) -> web.Response:
    level = _registry(request).level(request.match_info.get("subject"), _flag(request, "defaultToGlobal"))
    return reply(request, {"compatibilityLevel": level})


@routes.put("/config")
@routes.put("/config/{subject}")
async def put_config(request: web.Request) -> web.Response:
    body = await _body(request)
    if not isinstance(body, dict):
        raise errors.invalid_compatibility_level(body)
    level = await _registry(request).set_level(request.match_info.get("subject"), body.get("compatibility"))
    return reply(request, {"compatibility": level})


@routes.delete("/config")
@routes.delete("/config/{subject}")
async def delete_config(request: web.Request) -> web.Response:
    previous = await _registry(request).delete_level(request.match_info.get("subject"))
    return reply(request, {"compatibilityLevel": previous})


@routes.get("/mode")
@routes.get("/mode/{subject}")
async def get_mode(request: web.Request) -> web.Response:
    """Always READWRITE: this registry is never an import target (no IMPORT or READONLY mode)."""
    return reply(request, {"mode": "READWRITE"})


@routes.get("/contexts")
async def contexts(request: web.Request) -> web.Response:
    """Only the default context (no schema contexts, a Confluent Platform feature of Schema Linking)."""
    return reply(request, ["."])


def _with_trailing_slashes(table: web.RouteTableDef) -> list[web.RouteDef]:
    """Each route, and the same path ending in `/`: Confluent's server (Jersey) answers both, and clients
    use both (python-schema-registry-client asks for `/config/`). Served directly: a redirect is not
    followed by httpx, nor for a PUT or POST by most clients."""
    both = []
    for route in table:
        assert isinstance(route, web.RouteDef)
        both.append(route)
        if route.path != "/":
            both.append(web.RouteDef(route.method, route.path + "/", route.handler, route.kwargs))
    return both


# -- application --------------------------------------------------------------------------------


def _error_middleware(metrics_registry: CollectorRegistry) -> Any:
    requests = Counter(
        "schema_registry_requests", "HTTP requests served", ["method", "route", "status"], registry=metrics_registry
    )
    latency = Histogram("schema_registry_request_seconds", "HTTP request latency", ["route"], registry=metrics_registry)

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        started = time.perf_counter()
        route = request.match_info.route.resource.canonical if request.match_info.route.resource else "unmatched"
        try:
            response = await handler(request)
        except errors.RegistryError as exc:
            response = reply(request, exc.body(), status=exc.http_status)
        except web.HTTPException as exc:
            response = reply(
                request, {"error_code": exc.status, "message": f"HTTP {exc.status} {exc.reason}"}, exc.status
            )
        except Exception as exc:  # a bug: answer like Confluent does and keep serving
            logger.exception("error serving %s %s", request.method, request.path)
            response = reply(request, {"error_code": 500, "message": f"Internal error: {exc}"}, status=500)
        requests.labels(request.method, route, str(response.status)).inc()
        latency.labels(route).observe(time.perf_counter() - started)
        return response

    return middleware


#: Schema Registry's answer to a request without valid credentials, and the realm its documentation configures.
UNAUTHORIZED = {"error_code": 401, "message": "Unauthorized"}
REALM = "SchemaRegistry-Props"


def create_app(registry: Registry, auth: BasicAuth | None = None) -> web.Application:
    """The aiohttp application; loading the store starts with the app and runs in the background.

    With `auth`, every request must carry a user's credentials (HTTP basic), as with Confluent's
    `authentication.method=BASIC`.
    """
    metrics_registry = CollectorRegistry()
    Gauge("schema_registry_ready", "1 once the _schemas topic has been read", registry=metrics_registry).set_function(
        lambda: float(registry.ready)
    )
    Gauge("schema_registry_subjects", "live subjects", registry=metrics_registry).set_function(
        lambda: len(registry.state.subject_names())
    )
    Gauge("schema_registry_schemas", "distinct schema ids", registry=metrics_registry).set_function(
        lambda: registry.state.schema_count
    )
    middlewares = [_error_middleware(metrics_registry)]
    if auth is not None:
        middlewares.insert(0, auth.middleware(UNAUTHORIZED))
    app = web.Application(middlewares=middlewares)
    app[REGISTRY_KEY] = registry
    app[METRICS_KEY] = metrics_registry
    app.add_routes(_with_trailing_slashes(routes))
    app.cleanup_ctx.append(_store_lifecycle)
    return app


async def _store_lifecycle(app: web.Application) -> Any:
    registry = app[REGISTRY_KEY]
    registry.begin_loading()
    yield
    await registry.close()
