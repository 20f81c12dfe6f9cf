"""The OpenAPI 3.1 document of ingest's HTTP API, generated from the route tables.

Paths, parameters, scopes and replies come from the :class:`Route` declarations the
server registers; schemas come from the pydantic models (``models_json_schema``,
JSON Schema 2020-12, which OpenAPI 3.1 uses as is). Served at ``GET /v1/openapi.json``
and committed as ``docs/openapi.json``; a test regenerates it and compares.

Regenerate: ``python -m services.ingest.openapi`` (``--check`` exits 1 if stale).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Sequence
from functools import cache
from pathlib import Path
from typing import Any

from aiohttp import web
from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from services.ingest.api_models import ErrorBody
from services.ingest.characters_api import CHARACTER_ROUTES
from services.ingest.http_routes import Reply, Route, register
from services.ingest.jobs_api import JOB_ROUTES
from services.ingest.projects_api import PROJECT_ROUTES
from services.ingest.references import REFERENCE_ROUTES

DOCUMENT_PATH = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"

ERROR_DESCRIPTIONS = {
    400: "The request cannot be read: malformed JSON or path parameter, bad cursor.",
    401: "No API key, or an unknown or revoked one.",
    403: "The key lacks the scope, or may not use this project.",
    404: "No such resource (or the key may not see it).",
    409: "Conflicts with what exists.",
    413: "The body is too large.",
    415: "The body's Content-Type is not accepted here.",
    422: "The request was read but is not acceptable; every problem is listed.",
}

SECURITY_SCHEMES = {
    "bearer": {"type": "http", "scheme": "bearer", "description": "Authorization: Bearer ak_…"},
    "apiKeyHeader": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
    "apiKeyQuery": {
        "type": "apiKey",
        "in": "query",
        "name": "api_key",
        "description": "For clients that cannot set headers (browsers' WebSocket, EventSource).",
    },
}

DESCRIPTION = """\
Ingest is the one gate of the anime-production pipeline: it manages projects and
characters and turns shot requests into jobs (`job.accepted` / `job.rejected` events).

Every endpoint but the reference images and this document needs an API key with the
scope named in `x-required-scope` (`read`, `submit` or `admin`; `admin` implies the
others). A key may be limited to some projects. Errors are always
`{"errors": [{"field", "message", "code", "suggestions"}]}`."""


class OpenApi:
    async def get(self, request: web.Request) -> web.Response:
        return web.json_response(build_openapi())

    def register(self, app: web.Application) -> None:
        register(app, OPENAPI_ROUTES, self)


OPENAPI_ROUTES = (
    Route(
        "GET",
        "/v1/openapi.json",
        OpenApi.get,
        operation_id="getOpenApi",
        summary="This document",
        tag="meta",
        scope=None,
        replies=(
            Reply(200, "The OpenAPI 3.1 document.", media={"application/json": {"type": "object"}}),
        ),
    ),
)

ALL_ROUTES: tuple[Route, ...] = (
    *PROJECT_ROUTES,
    *CHARACTER_ROUTES,
    *JOB_ROUTES,
    *REFERENCE_ROUTES,
    *OPENAPI_ROUTES,
)

#: Served by every service's runtime (shared/runtime.py), public.
RUNTIME_PATHS: dict[str, Any] = {
    "/healthz": {
        "get": {
            "operationId": "healthz",
            "summary": "Liveness: the process answers",
            "tags": ["meta"],
            "security": [],
            "responses": {"200": {"description": "Alive."}},
        }
    },
    "/readyz": {
        "get": {
            "operationId": "readyz",
            "summary": "Readiness: broker and database reachable",
            "tags": ["meta"],
            "security": [],
            "responses": {
                "200": {"description": "Ready."},
                "503": {"description": "Not ready; `problems` says why."},
            },
        }
    },
    "/metrics": {
        "get": {
            "operationId": "metrics",
            "summary": "Prometheus metrics",
            "tags": ["meta"],
            "security": [],
            "responses": {"200": {"description": "Prometheus text format."}},
        }
    },
}


@cache
def build_openapi() -> dict[str, Any]:
    return openapi_document(ALL_ROUTES)


def openapi_document(routes: Sequence[Route]) -> dict[str, Any]:
    refs, schemas = _schemas(routes)
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        paths.setdefault(route.path, {})[route.method.lower()] = _operation(route, refs)
    paths.update(RUNTIME_PATHS)
    return {
        "openapi": "3.1.0",
        "info": {"title": "anime-production ingest", "version": "1", "description": DESCRIPTION},
        "tags": [
            {"name": "projects", "description": "Namespaces for shots and characters."},
            {"name": "characters", "description": "Characters, versions, attributes, references."},
            {"name": "jobs", "description": "Submitting shots and following jobs."},
            {"name": "meta", "description": "This document, health and metrics."},
        ],
        "paths": paths,
        "components": {"schemas": schemas, "securitySchemes": SECURITY_SCHEMES},
    }


Refs = dict[tuple[Any, JsonSchemaMode], dict[str, Any]]


def _schemas(routes: Iterable[Route]) -> tuple[Refs, dict[str, Any]]:
    wanted: list[tuple[type[BaseModel], JsonSchemaMode]] = [(ErrorBody, "serialization")]
    for route in routes:
        if route.body is not None:
            wanted.append((route.body, "validation"))
        wanted.extend((reply.model, "serialization") for reply in route.replies if reply.model)
    unique = list(dict.fromkeys(wanted))
    refs, top = models_json_schema(unique, ref_template="#/components/schemas/{model}")
    return dict(refs), dict(sorted(top.get("$defs", {}).items()))


def _operation(route: Route, refs: Refs) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "operationId": route.operation_id,
        "summary": route.summary,
        "tags": [route.tag],
    }
    if route.description:
        operation["description"] = route.description
    if route.scope is None:
        operation["security"] = []
    else:
        operation["security"] = [{name: []} for name in SECURITY_SCHEMES]
        operation["x-required-scope"] = route.scope
    parameters = [
        {
            "name": p.name,
            "in": "path",
            "required": True,
            "description": p.description,
            "schema": dict(p.schema),
        }
        for p in route.path_params
    ]
    if route.query is not None:
        parameters.extend(_query_parameters(route.query))
    if parameters:
        operation["parameters"] = parameters
    content: dict[str, Any] = {}
    if route.body is not None:
        content["application/json"] = {"schema": refs[(route.body, "validation")]}
    for media, schema in (route.body_media or {}).items():
        content[media] = {"schema": dict(schema)}
    if content:
        operation["requestBody"] = {"required": route.body_required, "content": content}
    responses: dict[str, Any] = {}
    for reply in route.replies:
        responses[str(reply.status)] = _reply(reply, refs)
    statuses = set(route.errors) | ({401, 403} if route.scope is not None else set())
    error_schema = {"application/json": {"schema": refs[(ErrorBody, "serialization")]}}
    for status in sorted(statuses):
        responses[str(status)] = {
            "description": ERROR_DESCRIPTIONS[status],
            "content": error_schema,
        }
    operation["responses"] = dict(sorted(responses.items()))
    return operation


def _reply(reply: Reply, refs: Refs) -> dict[str, Any]:
    answer: dict[str, Any] = {"description": reply.description}
    if reply.model is not None:
        answer["content"] = {"application/json": {"schema": refs[(reply.model, "serialization")]}}
    elif reply.media:
        answer["content"] = {m: {"schema": dict(s)} for m, s in reply.media.items()}
    return answer


def _query_parameters(model: type[BaseModel]) -> list[dict[str, Any]]:
    schema = model.model_json_schema(mode="validation")
    required = set(schema.get("required", []))
    parameters = []
    for name, prop in schema.get("properties", {}).items():
        prop = dict(prop)
        prop.pop("title", None)
        description = prop.pop("description", None)
        parameter: dict[str, Any] = {
            "name": name,
            "in": "query",
            "required": name in required,
            "schema": prop,
        }
        if description:
            parameter["description"] = description
        parameters.append(parameter)
    return parameters


def render() -> str:
    return json.dumps(build_openapi(), indent=2, ensure_ascii=False) + "\n"


def main(argv: Sequence[str] = ()) -> int:
    text = render()
    if "--check" in argv:
        current = DOCUMENT_PATH.read_text() if DOCUMENT_PATH.exists() else ""
        if current != text:
            sys.stderr.write(f"{DOCUMENT_PATH} is stale: run python -m services.ingest.openapi\n")
            return 1
        return 0
    DOCUMENT_PATH.write_text(text)
    sys.stdout.write(f"wrote {DOCUMENT_PATH}\n")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main(sys.argv[1:]))
