"""``/v1/projects``: create (admin), list and get (read)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from services.ingest.api_models import ProjectIn, ProjectList, ProjectOut
from services.ingest.errors import Invalid
from services.ingest.http_auth import require_project, visible_projects
from services.ingest.http_io import parse_model, path_slug, read_json
from services.ingest.http_routes import SLUG_SCHEMA, PathParam, Reply, Route, register
from services.ingest.hygiene import slugify
from services.ingest.projects_service import create_project, get_project, list_projects, project_out
from shared.db.session import SessionFactory


class ProjectsApi:
    def __init__(self, *, sessions: SessionFactory) -> None:
        self.sessions = sessions

    def register(self, app: web.Application) -> None:
        register(app, PROJECT_ROUTES, self)

    async def create(self, request: web.Request) -> web.Response:
        data = _project_in(await read_json(request))
        require_project(request, data.slug, field="slug")
        async with self.sessions() as session, session.begin():
            project = await create_project(session, data)
        return web.json_response(
            project_out(project).model_dump(mode="json"),
            status=201,
            headers={"Location": f"/v1/projects/{project.slug}"},
        )

    async def list_all(self, request: web.Request) -> web.Response:
        async with self.sessions() as session:
            projects = await list_projects(session, visible_projects(request))
        body = ProjectList(items=[project_out(p) for p in projects])
        return web.json_response(body.model_dump(mode="json"))

    async def get(self, request: web.Request) -> web.Response:
        slug = path_slug(request, "slug")
        require_project(request, slug, field="slug")
        async with self.sessions() as session:
            project = await get_project(session, slug)
        return web.json_response(project_out(project).model_dump(mode="json"))


def _project_in(body: Any) -> ProjectIn:
    """The body as a project; a bad slug's problem suggests a slug made from it."""
    try:
        return parse_model(ProjectIn, body)
    except Invalid as error:
        raw = body.get("slug") if isinstance(body, dict) else None
        suggestion = slugify(raw) if isinstance(raw, str) else ""
        if suggestion:
            error.problems = [
                p.model_copy(update={"suggestions": [suggestion]}) if p.field == "slug" else p
                for p in error.problems
            ]
        raise


_SLUG = PathParam("slug", "The project's slug.", SLUG_SCHEMA)

PROJECT_ROUTES = (
    Route(
        "POST",
        "/v1/projects",
        ProjectsApi.create,
        operation_id="createProject",
        summary="Create a project",
        tag="projects",
        scope="admin",
        body=ProjectIn,
        replies=(Reply(201, "The new project.", ProjectOut),),
        errors=(400, 409, 413, 415, 422),
    ),
    Route(
        "GET",
        "/v1/projects",
        ProjectsApi.list_all,
        operation_id="listProjects",
        summary="List the projects the key may see",
        tag="projects",
        scope="read",
        replies=(Reply(200, "Projects, by slug.", ProjectList),),
    ),
    Route(
        "GET",
        "/v1/projects/{slug}",
        ProjectsApi.get,
        operation_id="getProject",
        summary="Get a project",
        tag="projects",
        scope="read",
        path_params=(_SLUG,),
        replies=(Reply(200, "The project.", ProjectOut),),
        errors=(400, 404),
    ),
)
