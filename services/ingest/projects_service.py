"""Projects: the namespaces shots and characters live in."""

from __future__ import annotations

import difflib

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from services.ingest.api_models import ProjectIn, ProjectOut
from services.ingest.errors import Conflict, Invalid, NotFound
from shared.db.models import Project


def project_out(project: Project) -> ProjectOut:
    return ProjectOut(
        id=project.id,
        slug=project.slug,
        name=project.name,
        description=project.description,
        created_at=project.created_at,
    )


async def create_project(session: AsyncSession, data: ProjectIn) -> Project:
    """Insert a project; 409 if the slug is taken. Call inside a transaction."""
    existing = await session.scalar(select(Project).where(Project.slug == data.slug))
    if existing is not None:
        raise Conflict(
            f"project {data.slug!r} already exists (id {existing.id})",
            field="slug",
            code="slug_taken",
        )
    project = Project(slug=data.slug, name=data.name, description=data.description)
    session.add(project)
    try:
        async with session.begin_nested():
            await session.flush()
    except IntegrityError:
        raise Conflict(
            f"project {data.slug!r} already exists", field="slug", code="slug_taken"
        ) from None
    await session.refresh(project)
    return project


async def list_projects(session: AsyncSession, visible: frozenset[str] | None) -> list[Project]:
    query = select(Project).order_by(Project.slug)
    if visible is not None:
        query = query.where(Project.slug.in_(sorted(visible)))
    return list((await session.scalars(query)).all())


async def get_project(session: AsyncSession, slug: str) -> Project:
    """The project called ``slug``; 404 with the closest slugs otherwise."""
    project = await session.scalar(select(Project).where(Project.slug == slug))
    if project is None:
        raise NotFound(
            f"no project {slug!r}", field="slug", suggestions=await close_slugs(session, slug)
        )
    return project


async def project_for_write(session: AsyncSession, slug: str, *, field: str = "project") -> Project:
    """Like :func:`get_project`, but a missing project in a *body* is a 422."""
    project = await session.scalar(select(Project).where(Project.slug == slug))
    if project is None:
        close = await close_slugs(session, slug)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise Invalid(
            f"no project {slug!r}{hint}", field=field, code="unknown_project", suggestions=close
        )
    return project


async def close_slugs(session: AsyncSession, slug: str) -> list[str]:
    known = (await session.scalars(select(Project.slug))).all()
    return difflib.get_close_matches(slug, list(known), n=3, cutoff=0.5)
